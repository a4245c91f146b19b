/*
 * spool: the on-disk log of accepted events (spool.dir), the storage layer
 * of the disk spool.
 *
 * The log is a sequence of segment files, NNNNNNNNNNNNNNNN.seg (hex,
 * increasing), each a 24-byte header (magic "TASPOOL\0", format version,
 * when it was made (seconds since the epoch), the index of its first
 * record) and then records: a 4-byte
 * little-endian length, a 4-byte CRC-32 (of the length, the index and the
 * payload), the record's 8-byte index (records are numbered from 0, one
 * more each, for the life of the directory) and the payload (one event's
 * JSON, as the backend will get it). Records never span segments. A
 * checkpoint file says where the first record not yet confirmed by the
 * backend starts, and keeps a small blob of the caller's state with it
 * (the agent's counters); segments wholly before it are deleted. A lock
 * (flock on LOCK) keeps a second agent out of the directory. Indexes tell
 * how many records a corrupt stretch held.
 *
 * Appends are gathered in memory and written by spool_write(), made
 * durable by spool_sync(); a writer calls them off the event loop or in
 * small doses. Recovery at open only re-reads the last segment (a crash can
 * tear only the tail): a torn or corrupt tail is truncated and counted.
 * Older segments are checked as they are read: a record whose checksum
 * fails is skipped up to the next valid record, and counted.
 *
 * Pages that are durable and that the reader is megabytes behind leave the
 * page cache (as do those it read from so far behind): a backlog is read
 * back from the disk, not kept in memory charged to the agent's cgroup,
 * and the kernel reuses the pages it drops for the next writes.
 */
#ifndef TA_SPOOL_H
#define TA_SPOOL_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

#define SPOOL_FORMAT_VERSION 1
#define SPOOL_HEADER_BYTES 24
#define SPOOL_RECORD_HEAD 16              /* length, CRC, index */
#define SPOOL_STATE_MAX 4096              /* the caller's blob kept with the checkpoint */
#define SPOOL_RECORD_MAX (16u * 1024 * 1024) /* a longer length is corruption */

struct spool;

/* A place in the log: a segment, a byte offset in it, and the index of
 * the record that starts there (or would). */
struct spool_pos {
    uint64_t segment;
    uint64_t offset;
    uint64_t index;
};

/* What opening found and repaired. */
struct spool_recovery {
    uint64_t segments;        /* segment files kept */
    uint64_t backlog_bytes;   /* bytes from the checkpoint to the end */
    uint64_t torn_bytes;      /* cut from the tail of the last segment */
    int checkpoint_lost;      /* the checkpoint was unreadable: reading starts at the beginning */
    struct spool_pos checkpoint; /* where reading starts */
    uint64_t end_index;       /* the index the next record appended gets */
    struct buf state;         /* the blob saved with the checkpoint (empty: none); the
                               * caller frees it */
};

enum spool_status {
    SPOOL_OK = 0,
    SPOOL_FULL = -1,  /* the unconfirmed records (SPOOL_RECORD_HEAD and payload each; not
                       * the segments' headers) would pass spool.max_bytes: nothing was
                       * taken */
    SPOOL_IO = -2,    /* a write, sync or read failed (errno says why; ENOSPC a full disk) */
    SPOOL_NO_MEMORY = -3, /* the record could not be queued for want of memory: nothing
                           * was taken */
};

/* Open (creating it if needed) the spool in dir. Returns the spool, or NULL
 * with a message naming the directory, the problem and what is allowed in
 * err (another agent holds it, a segment of a newer format, permissions). */
struct spool *spool_open(const char *dir, uint64_t max_bytes, uint64_t segment_bytes,
                         struct spool_recovery *rec, char *err, size_t errlen);
void spool_close(struct spool *s);

/* Queue one record (taken whole or not at all); *end is where the log will
 * end once it is written. */
enum spool_status spool_append(struct spool *s, const void *data, size_t len,
                               struct spool_pos *end);
/* Write what was appended. SPOOL_IO leaves it queued, to be tried again. */
enum spool_status spool_write(struct spool *s);
/* Make what was written durable (fdatasync, and the directory after a new
 * segment). */
enum spool_status spool_sync(struct spool *s);

/* The first record not yet confirmed (where reading starts after open). */
struct spool_pos spool_checkpoint(const struct spool *s);
/* Read the record at *at (which must be written) into out (replaced), and
 * move *at past it. Returns 1, 0 at the end of what is written, or
 * SPOOL_IO. Corrupt records are skipped (spool_skipped counts the bytes);
 * *lost is set to how many records they held (0 mostly). */
int spool_read(struct spool *s, struct spool_pos *at, struct buf *out, uint64_t *lost);
/* The same, but the record is appended to out (on any other answer out is
 * as it was). */
int spool_read_append(struct spool *s, struct spool_pos *at, struct buf *out, uint64_t *lost);
/* The backend confirmed everything before upto: persist the checkpoint,
 * with state (at most SPOOL_STATE_MAX bytes, kept for the next open), and
 * delete the segments wholly before it. */
enum spool_status spool_confirm(struct spool *s, struct spool_pos upto, const void *state,
                                size_t state_len);
/* The index after the last record written (not just appended). */
uint64_t spool_written_index(const struct spool *s);
/* Sync each finished segment before starting the next (when what is
 * written must be made durable, not only written). */
void spool_sync_segments(struct spool *s, int on);
/* What is written is durable now (synced, or written when no sync is
 * asked for): spool_rewind() comes back to here. */
void spool_mark_durable(struct spool *s);
/* A write or sync failed: forget what was appended or written since the
 * last spool_mark_durable() (it is cut from the log), so that the caller
 * can append it again, to the same places with the same indexes. After a
 * failed fsync the kernel may have dropped the pages it could not write,
 * and a later fsync may succeed without them: only writing them again
 * makes them durable. */
enum spool_status spool_rewind(struct spool *s);
/* The index after the last record known durable. */
uint64_t spool_durable_index(const struct spool *s);

/* Bytes of segment files on disk from the checkpoint's segment on, and
 * what is queued but not yet written. */
uint64_t spool_bytes(const struct spool *s);
/* Bytes skipped as corrupt while reading. */
uint64_t spool_skipped(const struct spool *s);
/* Segment files kept (from the checkpoint's on). */
uint64_t spool_segments(const struct spool *s);
/* When the checkpoint's segment was made (ms since the epoch; 0 unknown):
 * every undelivered record is at most that old. Read from the segment's
 * header only when the checkpoint moves to another segment. */
int64_t spool_checkpoint_made_ms(struct spool *s);

#endif
