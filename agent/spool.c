/*
 * spool: segmented, checksummed log on disk (see spool.h).
 */
#define _GNU_SOURCE /* fdatasync, flock */
#include "spool.h"

#include "dirs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libdeflate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SPOOL_MAGIC "TASPOOL"           /* + NUL: 8 bytes */
#define SPOOL_CHECKPOINT_MAGIC "TACKPT2" /* + NUL */
#define SPOOL_CHECKPOINT "checkpoint"
/* The checkpoint file has two slots, made at start and written in turn
 * (the newer valid one counts): confirming never needs a free block, so a
 * full disk can still be emptied, and a torn write leaves the other. */
#define SPOOL_CHECKPOINT_SLOT 8192
#define SPOOL_READ_AHEAD (128 * 1024) /* read from a segment at once, for many records */
#define SPOOL_LOCK "LOCK"
/* Written pages the reader is this far behind are dropped from the page
 * cache once durable (see spool_uncache_tail). */
#define SPOOL_CACHED_LAG (4 * 1024 * 1024)
#define SPOOL_PAGE_START(offset) ((offset) & ~(uint64_t)4095) /* of the page it is in */
#define SPOOL_CHECKPOINT_HEAD 44 /* magic, sequence, segment, offset, index, state length */

struct spool {
    int dirfd;
    int lockfd;
    int cp_fd;               /* the checkpoint file */
    uint64_t cp_seq;         /* the sequence number of the newest slot written */
    uint64_t made_segment;   /* the segment made_ms was read from (0: none yet) */
    int64_t made_ms;
    char *dir;
    uint64_t max_bytes;
    uint64_t segment_bytes;
    uint64_t first_segment;  /* oldest segment kept */
    uint64_t tail_segment;   /* the one being written */
    int tail_fd;
    uint64_t tail_size;      /* bytes written to it */
    uint64_t tail_whole;     /* ... up to the end of its last whole record (a write cut
                              * short by a full disk leaves part of one) */
    uint64_t tail_first;     /* index of its first record */
    uint64_t tail_durable;   /* bytes of it known durable (spool_mark_durable) */
    uint64_t tail_uncached;  /* its pages before this offset were dropped from the page cache */
    uint64_t durable_index;  /* ... and the index after them */
    int sync_on_roll;        /* a finished segment is synced before the next begins */
    uint64_t next_index;     /* of the next record appended */
    uint64_t written_index;  /* after the last record written */
    uint64_t older_bytes;    /* bytes of the segments before it */
    int dir_dirty;           /* a segment was created: sync the directory */
    struct buf pending;      /* appended, not yet written (all for the tail) */
    struct spool_pos checkpoint;
    int read_fd;
    uint64_t read_segment;
    uint64_t read_size;      /* of the read segment (not the tail) */
    uint64_t read_uncached;  /* its pages before this offset were dropped after reading */
    struct spool_pos reader; /* where the last spool_read left off */
    struct buf ahead;        /* bytes of the read segment read ahead (empty: none) */
    uint64_t ahead_offset;   /* ... from this offset */
    uint64_t skipped;
};

static void spool_put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void spool_put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t spool_get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t spool_get64(const unsigned char *p)
{
    return (uint64_t)spool_get32(p) | (uint64_t)spool_get32(p + 4) << 32;
}

/* The record's CRC covers its length, its index and its payload. */
static uint32_t spool_crc(const unsigned char *head, const void *payload, size_t len)
{
    uint32_t crc = libdeflate_crc32(0, head, 4);
    crc = libdeflate_crc32(crc, head + 8, 8);
    return libdeflate_crc32(crc, payload, len);
}

static void spool_segment_name(uint64_t id, char *name, size_t size)
{
    snprintf(name, size, "%016" PRIx64 ".seg", id);
}

/* Is `name` a segment file's name? Its id in *id. */
static int spool_parse_segment_name(const char *name, uint64_t *id)
{
    if (strlen(name) != 20 || strcmp(name + 16, ".seg") != 0)
        return 0;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = name[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return 0;
        v = v << 4 | (uint64_t)d;
    }
    *id = v;
    return 1;
}

static int spool_open_segment(struct spool *s, uint64_t id, int flags)
{
    char name[32];
    spool_segment_name(id, name, sizeof name);
    return openat(s->dirfd, name, flags | O_CLOEXEC, 0600);
}

static uint64_t spool_segment_size(struct spool *s, uint64_t id)
{
    char name[32];
    struct stat st;
    spool_segment_name(id, name, sizeof name);
    return fstatat(s->dirfd, name, &st, 0) == 0 ? (uint64_t)st.st_size : 0;
}

/* Write all of data at offset. Returns bytes written (short only on error). */
static size_t spool_pwrite_all(int fd, const void *data, size_t len, uint64_t offset)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, (const char *)data + done, len - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            break;
        }
        done += (size_t)n;
    }
    return done;
}

static int spool_pread_all(int fd, void *data, size_t len, uint64_t offset)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)data + done, len - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (int)(done == len);
}

/* Is the reader far enough behind the end of what is written that pages
 * written now would leave the page cache before it reads them anyway? The
 * lag is counted as if the segments between were full. */
static int spool_reader_lags(const struct spool *s)
{
    uint64_t behind = (s->tail_segment - s->reader.segment) * s->segment_bytes + s->tail_size;
    return behind > s->reader.offset && behind - s->reader.offset > SPOOL_CACHED_LAG;
}

/* Durable pages of the tail the reader will not want soon leave the page
 * cache (whole pages only; `finished`: to the end of the file). Written
 * pages would otherwise stay cached, charged to the agent's memory cgroup,
 * until memory pressure evicts them; dropping them lets the kernel reuse
 * the same pages for the next writes. Only a hint: a failure changes
 * nothing. */
static void spool_uncache_tail(struct spool *s, int finished)
{
    if (!spool_reader_lags(s))
        return;
    uint64_t upto = finished ? 0 : SPOOL_PAGE_START(s->tail_size);
    if (!finished && upto <= s->tail_uncached)
        return;
    posix_fadvise(s->tail_fd, (off_t)s->tail_uncached,
                  finished ? 0 : (off_t)(upto - s->tail_uncached), POSIX_FADV_DONTNEED);
    s->tail_uncached = upto;
}

/* A new, empty segment with its header; it becomes the tail. */
static int spool_new_segment(struct spool *s, uint64_t id)
{
    int fd = spool_open_segment(s, id, O_WRONLY | O_CREAT | O_TRUNC);
    if (fd < 0)
        return -1;
    unsigned char head[SPOOL_HEADER_BYTES] = {0};
    memcpy(head, SPOOL_MAGIC, 8);
    spool_put32(head + 8, SPOOL_FORMAT_VERSION);
    spool_put32(head + 12, (uint32_t)time(NULL));
    spool_put64(head + 16, s->next_index);
    /* the finished segment is synced before the next one takes writes */
    if (spool_pwrite_all(fd, head, sizeof head, 0) != sizeof head ||
        (s->tail_fd >= 0 && s->sync_on_roll && fdatasync(s->tail_fd) < 0)) {
        int saved = errno;
        close(fd);
        char name[32];
        spool_segment_name(id, name, sizeof name);
        unlinkat(s->dirfd, name, 0);
        errno = saved;
        return -1;
    }
    if (s->tail_fd >= 0) {
        if (s->sync_on_roll)
            spool_uncache_tail(s, 1);
        close(s->tail_fd);
        s->older_bytes += s->tail_size;
    }
    s->tail_fd = fd;
    s->tail_segment = id;
    s->tail_size = s->tail_whole = s->tail_durable = SPOOL_HEADER_BYTES;
    s->tail_uncached = 0;
    s->tail_first = s->durable_index = s->next_index; /* what came before is durable */
    s->dir_dirty = 1;
    return 0;
}

/* Which indexes the records of a segment can have: from its first record's
 * on, one per SPOOL_RECORD_HEAD bytes of it at most. */
struct spool_index_range {
    uint64_t first, last;
};

static struct spool_index_range spool_range(uint64_t first, uint64_t segment_size)
{
    return (struct spool_index_range){first, first + segment_size / SPOOL_RECORD_HEAD};
}

/* Is there a valid record at `off` in data[0..len), in a segment whose
 * records have indexes in `range`? Its total size. (The cheap checks come
 * first: scanning damage calls this at every offset.) */
static size_t spool_valid_record(const unsigned char *data, size_t len, size_t off,
                                 struct spool_index_range range)
{
    if (len - off < SPOOL_RECORD_HEAD)
        return 0;
    uint32_t rlen = spool_get32(data + off);
    uint64_t index = spool_get64(data + off + 8);
    if (rlen == 0 || rlen > SPOOL_RECORD_MAX || rlen > len - off - SPOOL_RECORD_HEAD ||
        index < range.first || index > range.last)
        return 0;
    if (spool_crc(data + off, data + off + SPOOL_RECORD_HEAD, rlen) != spool_get32(data + off + 4))
        return 0;
    return SPOOL_RECORD_HEAD + rlen;
}

/* The first offset at or after `from` where a valid record starts in
 * data[0..len), or len. */
static size_t spool_resync(const unsigned char *data, size_t len, size_t from,
                           struct spool_index_range range)
{
    for (size_t off = from; off < len; off++)
        if (spool_valid_record(data, len, off, range) > 0)
            return off;
    return len;
}

/* Read a whole segment file into out. */
static int spool_slurp(struct spool *s, uint64_t id, struct buf *out)
{
    int fd = spool_open_segment(s, id, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    buf_rollback(out, 0);
    int ok = buf_reserve(out, (size_t)st.st_size) == 0 &&
             spool_pread_all(fd, out->data, (size_t)st.st_size, 0) == 1;
    close(fd);
    if (!ok)
        return -1;
    out->len = (size_t)st.st_size;
    return 0;
}

/* Checks a segment's header: 1 ours, 0 not a segment (torn or foreign), -1
 * a newer format (*version says which). */
static int spool_check_header(const unsigned char *data, size_t len, uint32_t *version)
{
    if (len < SPOOL_HEADER_BYTES || memcmp(data, SPOOL_MAGIC, 8) != 0)
        return 0;
    *version = spool_get32(data + 8);
    return *version > SPOOL_FORMAT_VERSION ? -1 : 1;
}

static int spool_refuse(char *err, size_t errlen, const char *fmt, const char *dir,
                        const char *what)
{
    snprintf(err, errlen, fmt, dir, what);
    return -1;
}

/* Take the directory's lock, or say who holds it. */
static int spool_lock(struct spool *s, char *err, size_t errlen)
{
    s->lockfd = openat(s->dirfd, SPOOL_LOCK, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lockfd < 0)
        return spool_refuse(err, errlen, "[spool] dir = '%s': cannot create its lock file: %s",
                            s->dir, strerror(errno));
    if (flock(s->lockfd, LOCK_EX | LOCK_NB) < 0) {
        char pid[32] = "";
        ssize_t n = pread(s->lockfd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        snprintf(err, errlen, "[spool] dir = '%s' is in use by another agent (pid %s) "
                 "(allowed: one agent per spool directory)", s->dir, pid[0] ? pid : "unknown");
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(s->lockfd, 0) == 0)
        spool_pwrite_all(s->lockfd, pid, (size_t)n, 0);
    return 0;
}

static int spool_compare_ids(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The ids of the segment files, sorted. */
static int spool_list(struct spool *s, uint64_t **ids, size_t *count)
{
    int fd = dup(s->dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t n = 0, cap = 0;
    uint64_t *list = NULL, id;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!spool_parse_segment_name(e->d_name, &id))
            continue;
        if (n == cap) {
            uint64_t *more = realloc(list, (cap = cap ? cap * 2 : 16) * sizeof *list);
            if (more == NULL) {
                free(list);
                closedir(d);
                return -1;
            }
            list = more;
        }
        list[n++] = id;
    }
    closedir(d);
    if (n > 1)
        qsort(list, n, sizeof *list, spool_compare_ids);
    *ids = list;
    *count = n;
    return 0;
}

/* Open the checkpoint file, making its two slots if it is new. */
static int spool_open_checkpoint(struct spool *s, char *err, size_t errlen)
{
    struct stat st;
    s->cp_fd = openat(s->dirfd, SPOOL_CHECKPOINT, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->cp_fd >= 0 && fstat(s->cp_fd, &st) == 0 && st.st_size >= 2 * SPOOL_CHECKPOINT_SLOT)
        return 0;
    static const unsigned char zeros[2 * SPOOL_CHECKPOINT_SLOT];
    if (s->cp_fd < 0 || spool_pwrite_all(s->cp_fd, zeros, sizeof zeros, 0) != sizeof zeros ||
        fdatasync(s->cp_fd) < 0 || fsync(s->dirfd) < 0)
        return spool_refuse(err, errlen, "[spool] dir = '%s': cannot make its checkpoint file: "
                            "%s", s->dir, strerror(errno));
    return 0;
}

/* Read the newest valid checkpoint slot and its state blob. Returns 1, 0
 * if none was ever written, -1 if none is readable. */
static int spool_read_checkpoint(struct spool *s, struct spool_pos *pos, struct buf *state)
{
    unsigned char b[SPOOL_CHECKPOINT_SLOT];
    int found = 0, written = 0;
    for (int slot = 0; slot < 2; slot++) {
        if (spool_pread_all(s->cp_fd, b, sizeof b, (uint64_t)slot * sizeof b) != 1)
            continue;
        uint32_t state_len = spool_get32(b + 40);
        uint64_t seq = spool_get64(b + 8);
        if (memcmp(b, SPOOL_CHECKPOINT_MAGIC, 8) != 0)
            continue; /* never written (zeros), or not ours */
        written = 1;
        if (state_len > SPOOL_STATE_MAX ||
            libdeflate_crc32(0, b, SPOOL_CHECKPOINT_HEAD + state_len) !=
                spool_get32(b + SPOOL_CHECKPOINT_HEAD + state_len) ||
            (found && seq <= s->cp_seq))
            continue;
        found = 1;
        s->cp_seq = seq;
        pos->segment = spool_get64(b + 16);
        pos->offset = spool_get64(b + 24);
        pos->index = spool_get64(b + 32);
        buf_rollback(state, 0);
        buf_append(state, b + SPOOL_CHECKPOINT_HEAD, state_len);
    }
    if (found)
        return state->failed ? -1 : 1;
    return written ? -1 : 0;
}

static void spool_delete_segment(struct spool *s, uint64_t id)
{
    char name[32];
    spool_segment_name(id, name, sizeof name);
    unlinkat(s->dirfd, name, 0);
}

/* The index of segment id's first record, from its header (0 if unreadable). */
/* Read segment id's header into head. Returns 1, or 0 if it cannot. */
static int spool_read_header(struct spool *s, uint64_t id, unsigned char *head)
{
    int fd = spool_open_segment(s, id, O_RDONLY);
    int whole = fd >= 0 ? spool_pread_all(fd, head, SPOOL_HEADER_BYTES, 0) : 0;
    if (fd >= 0)
        close(fd);
    return whole == 1;
}

static uint64_t spool_first_index(struct spool *s, uint64_t id)
{
    unsigned char head[SPOOL_HEADER_BYTES];
    return spool_read_header(s, id, head) ? spool_get64(head + 16) : 0;
}

/* Find the valid end of the last segment and cut what is torn after it. */
static int spool_recover_tail(struct spool *s, uint64_t id, struct spool_recovery *rec)
{
    struct buf data = BUF_INIT;
    if (spool_slurp(s, id, &data) < 0) {
        buf_free(&data);
        return -1;
    }
    const unsigned char *p = (const unsigned char *)data.data;
    size_t end = SPOOL_HEADER_BYTES, off = SPOOL_HEADER_BYTES;
    uint64_t first = spool_get64(p + 16), next_index = first;
    while (off < data.len) {
        size_t size = spool_valid_record(p, data.len, off, spool_range(first, data.len));
        if (size == 0) {
            size_t next = spool_resync(p, data.len, off + 1, spool_range(first, data.len));
            if (next == data.len)
                break;
            off = next; /* corrupt in the middle: skipped when read */
            continue;
        }
        next_index = spool_get64(p + off + 8) + 1;
        off += size;
        end = off;
    }
    rec->torn_bytes += data.len - end;
    buf_free(&data);
    s->tail_fd = spool_open_segment(s, id, O_WRONLY);
    if (s->tail_fd < 0 || ftruncate(s->tail_fd, (off_t)end) < 0)
        return -1;
    s->tail_segment = id;
    s->tail_size = s->tail_whole = s->tail_durable = end;
    s->tail_first = first;
    s->next_index = s->written_index = s->durable_index = next_index;
    return 0;
}

struct spool *spool_open(const char *dir, uint64_t max_bytes, uint64_t segment_bytes,
                         struct spool_recovery *rec, char *err, size_t errlen)
{
    memset(rec, 0, sizeof *rec);
    struct spool *s = calloc(1, sizeof *s);
    if (s == NULL || (s->dir = strdup(dir)) == NULL) {
        free(s);
        snprintf(err, errlen, "[spool] dir = '%s': out of memory", dir);
        return NULL;
    }
    s->max_bytes = max_bytes;
    s->segment_bytes = segment_bytes;
    s->tail_fd = s->read_fd = s->lockfd = s->dirfd = s->cp_fd = -1;
    uint64_t *ids = NULL;
    size_t count = 0;
    char failed[512];
    if (dirs_make(dir, 0755, 0700, failed, sizeof failed) < 0) {
        snprintf(err, errlen, "[spool] dir = '%s': cannot create directory %s: %s", dir, failed,
                 strerror(errno));
        goto fail;
    }
    s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        spool_refuse(err, errlen, "[spool] dir = '%s': cannot open it: %s", dir, strerror(errno));
        goto fail;
    }
    if (spool_lock(s, err, errlen) < 0 || spool_open_checkpoint(s, err, errlen) < 0)
        goto fail;
    if (spool_list(s, &ids, &count) < 0) {
        spool_refuse(err, errlen, "[spool] dir = '%s': cannot list it: %s", dir, strerror(errno));
        goto fail;
    }
    for (size_t i = 0; i < count; i++) {
        unsigned char head[SPOOL_HEADER_BYTES];
        uint32_t version = 0;
        int kind = spool_read_header(s, ids[i], head)
                       ? spool_check_header(head, sizeof head, &version) : 0;
        if (kind < 0) {
            snprintf(err, errlen, "[spool] dir = '%s': segment %016" PRIx64 ".seg is of format "
                     "%" PRIu32 ", written by a newer agent (allowed: format %d or older)",
                     dir, ids[i], version, SPOOL_FORMAT_VERSION);
            goto fail;
        }
        if (kind == 0) { /* a header torn at creation: nothing in it was ever written */
            rec->torn_bytes += spool_segment_size(s, ids[i]);
            spool_delete_segment(s, ids[i]);
            memmove(ids + i, ids + i + 1, (count - i - 1) * sizeof *ids);
            count--;
            i--;
        }
    }
    struct spool_pos cp = {0, 0, 0};
    int have = spool_read_checkpoint(s, &cp, &rec->state);
    if (have < 0) {
        rec->checkpoint_lost = 1;
        buf_rollback(&rec->state, 0);
    }
    if (have <= 0 || count == 0 || cp.segment < ids[0]) {
        cp.segment = count > 0 ? ids[0] : 1;
        cp.offset = SPOOL_HEADER_BYTES;
        cp.index = count > 0 ? spool_first_index(s, ids[0]) : have > 0 ? cp.index : 0;
    }
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) { /* wholly confirmed before a crash */
        if (ids[i] < cp.segment)
            spool_delete_segment(s, ids[i]);
        else
            ids[kept++] = ids[i];
    }
    count = kept;
    if (count == 0) {
        s->next_index = s->written_index = s->durable_index = cp.index;
        if (spool_new_segment(s, cp.segment) < 0) {
            spool_refuse(err, errlen, "[spool] dir = '%s': cannot create a segment: %s", dir,
                         strerror(errno));
            goto fail;
        }
        cp.offset = SPOOL_HEADER_BYTES;
    } else {
        for (size_t i = 0; i + 1 < count; i++)
            s->older_bytes += spool_segment_size(s, ids[i]);
        if (spool_recover_tail(s, ids[count - 1], rec) < 0) {
            spool_refuse(err, errlen, "[spool] dir = '%s': cannot recover its last segment: %s",
                         dir, strerror(errno));
            goto fail;
        }
        if (cp.segment == s->tail_segment && cp.offset >= s->tail_size) {
            cp.offset = s->tail_size; /* confirmed up to (or past a torn) end */
            cp.index = s->next_index;
        }
    }
    s->first_segment = count > 0 ? ids[0] : cp.segment;
    s->checkpoint = s->reader = cp;
    rec->segments = count > 0 ? count : 1;
    rec->backlog_bytes = spool_bytes(s) - cp.offset; /* older segments are gone */
    rec->checkpoint = cp;
    rec->end_index = s->next_index;
    free(ids);
    return s;
fail:
    free(ids);
    spool_close(s);
    return NULL;
}

void spool_close(struct spool *s)
{
    if (s == NULL)
        return;
    if (s->tail_fd >= 0)
        close(s->tail_fd);
    if (s->read_fd >= 0)
        close(s->read_fd);
    if (s->cp_fd >= 0)
        close(s->cp_fd);
    if (s->lockfd >= 0)
        close(s->lockfd); /* releases the lock */
    if (s->dirfd >= 0)
        close(s->dirfd);
    buf_free(&s->pending);
    buf_free(&s->ahead);
    free(s->dir);
    free(s);
}

enum spool_status spool_append(struct spool *s, const void *data, size_t len,
                               struct spool_pos *end)
{
    size_t size = SPOOL_RECORD_HEAD + len;
    /* the bound is on the records not yet confirmed, as the agent counts
     * them before they are written: the bytes after the checkpoint
     * (segments before it are gone) less the headers of the segments after
     * the checkpoint's own. The checkpoint can be past the end: records
     * delivered before they were durable, cut by spool_rewind after a
     * failed write and appended again to the same places. */
    uint64_t confirmed = s->checkpoint.offset +
                         (s->tail_segment - s->checkpoint.segment) * SPOOL_HEADER_BYTES;
    uint64_t unconfirmed = spool_bytes(s) > confirmed ? spool_bytes(s) - confirmed : 0;
    if (len == 0 || len > SPOOL_RECORD_MAX || unconfirmed + size > s->max_bytes)
        return SPOOL_FULL;
    if (s->tail_size + s->pending.len + size > s->segment_bytes &&
        s->tail_size + s->pending.len > SPOOL_HEADER_BYTES) {
        if (spool_write(s) != SPOOL_OK || spool_new_segment(s, s->tail_segment + 1) < 0)
            return SPOOL_IO;
    }
    unsigned char head[SPOOL_RECORD_HEAD];
    spool_put32(head, (uint32_t)len);
    spool_put64(head + 8, s->next_index);
    spool_put32(head + 4, spool_crc(head, data, len));
    size_t mark = s->pending.len;
    buf_append(&s->pending, head, sizeof head);
    buf_append(&s->pending, data, len);
    if (s->pending.failed) {
        buf_rollback(&s->pending, mark);
        return SPOOL_NO_MEMORY;
    }
    end->segment = s->tail_segment;
    end->offset = s->tail_size + s->pending.len;
    end->index = ++s->next_index;
    return SPOOL_OK;
}

enum spool_status spool_write(struct spool *s)
{
    if (s->pending.len == 0)
        return SPOOL_OK;
    size_t n = spool_pwrite_all(s->tail_fd, s->pending.data, s->pending.len, s->tail_size);
    s->tail_size += n;
    size_t left = s->pending.len - n;
    memmove(s->pending.data, s->pending.data + n, left);
    buf_truncate(&s->pending, left);
    if (left > 0)
        return SPOOL_IO;
    s->tail_whole = s->tail_size;
    s->written_index = s->next_index;
    return SPOOL_OK;
}

enum spool_status spool_sync(struct spool *s)
{
    if (fdatasync(s->tail_fd) < 0)
        return SPOOL_IO;
    spool_uncache_tail(s, 0);
    if (s->dir_dirty) {
        if (fsync(s->dirfd) < 0)
            return SPOOL_IO;
        s->dir_dirty = 0;
    }
    return SPOOL_OK;
}

struct spool_pos spool_checkpoint(const struct spool *s)
{
    return s->checkpoint;
}

/* Make the segment `id` the one reads come from. */
static int spool_read_from(struct spool *s, uint64_t id)
{
    if (s->read_fd >= 0 && s->read_segment == id)
        return 0;
    if (s->read_fd >= 0)
        close(s->read_fd);
    buf_rollback(&s->ahead, 0);
    s->read_fd = spool_open_segment(s, id, O_RDONLY);
    s->read_segment = id;
    s->read_uncached = 0;
    struct stat st;
    if (s->read_fd < 0 || fstat(s->read_fd, &st) < 0)
        return -1;
    s->read_size = (uint64_t)st.st_size;
    return 0;
}

/* A record at *at failed its check: skip to the next valid one in the same
 * segment, or to the segment's end. */
static int spool_skip_corrupt(struct spool *s, struct spool_pos *at, uint64_t seg_end)
{
    struct buf rest = BUF_INIT;
    size_t len = (size_t)(seg_end - at->offset);
    if (buf_reserve(&rest, len) < 0 || spool_pread_all(s->read_fd, rest.data, len, at->offset) != 1) {
        buf_free(&rest);
        return -1;
    }
    uint64_t first = at->segment == s->tail_segment ? s->tail_first
                                                    : spool_first_index(s, at->segment);
    size_t next = spool_resync((const unsigned char *)rest.data, len, 1,
                               spool_range(first, seg_end));
    buf_free(&rest);
    s->skipped += next;
    at->offset += next;
    return 0;
}

/* Reading reached segment `id` at *at: records before its first one that
 * were never read were lost (a corrupt end of the previous segment). */
static void spool_enter_segment(struct spool *s, struct spool_pos *at, uint64_t *lost)
{
    uint64_t first = at->segment == s->tail_segment ? s->tail_first
                                                    : spool_first_index(s, at->segment);
    if (first > at->index) {
        *lost += first - at->index;
        at->index = first;
    }
}

/* The window read ahead was read, up to `next` (where the next one
 * starts): the whole pages of the read segment before it leave the page
 * cache if they are synced and the reader lags (see spool_uncache_tail). */
static void spool_uncache_read(struct spool *s, uint64_t next)
{
    uint64_t end = s->ahead_offset + s->ahead.len;
    if (next < end)
        end = next;
    end = SPOOL_PAGE_START(end);
    if (s->ahead.len == 0 || end <= s->read_uncached || !s->sync_on_roll ||
        !spool_reader_lags(s) || (s->read_segment == s->tail_segment && end > s->tail_durable))
        return;
    posix_fadvise(s->read_fd, (off_t)s->read_uncached, (off_t)(end - s->read_uncached),
                  POSIX_FADV_DONTNEED);
    s->read_uncached = end;
}

/* len bytes of the read segment at offset, of those before seg_end (whole
 * records, which do not change), through a window read ahead: one pread
 * serves many records. Returns as spool_pread_all. */
static int spool_read_window(struct spool *s, void *dst, size_t len, uint64_t offset,
                             uint64_t seg_end)
{
    if (offset + len > seg_end || len > SPOOL_READ_AHEAD) /* past what is whole, or larger
                                                            * than the window: read as is */
        return spool_pread_all(s->read_fd, dst, len, offset);
    if (s->ahead.len == 0 || offset < s->ahead_offset ||
        offset + len > s->ahead_offset + s->ahead.len) {
        size_t want = seg_end - offset > SPOOL_READ_AHEAD ? SPOOL_READ_AHEAD
                                                          : (size_t)(seg_end - offset);
        spool_uncache_read(s, offset);
        buf_rollback(&s->ahead, 0);
        if (buf_reserve(&s->ahead, want) < 0 ||
            spool_pread_all(s->read_fd, s->ahead.data, want, offset) != 1) {
            buf_rollback(&s->ahead, 0);
            return spool_pread_all(s->read_fd, dst, len, offset);
        }
        s->ahead.len = want;
        s->ahead_offset = offset;
    }
    memcpy(dst, s->ahead.data + (offset - s->ahead_offset), len);
    return 1;
}

int spool_read(struct spool *s, struct spool_pos *at, struct buf *out, uint64_t *lost)
{
    buf_rollback(out, 0);
    return spool_read_append(s, at, out, lost);
}

int spool_read_append(struct spool *s, struct spool_pos *at, struct buf *out, uint64_t *lost)
{
    size_t base = out->len;
    *lost = 0;
    for (;;) {
        if (at->segment < s->first_segment) {
            at->segment = s->first_segment;
            at->offset = SPOOL_HEADER_BYTES;
            spool_enter_segment(s, at, lost);
        }
        if (at->segment != s->tail_segment && spool_read_from(s, at->segment) < 0)
            return SPOOL_IO;
        uint64_t seg_end = at->segment == s->tail_segment ? s->tail_whole : s->read_size;
        struct stat st;
        if (at->segment != s->tail_segment && at->offset >= seg_end &&
            fstat(s->read_fd, &st) == 0 && (uint64_t)st.st_size > seg_end)
            seg_end = s->read_size = (uint64_t)st.st_size; /* it grew since, as the tail */
        if (at->offset < SPOOL_HEADER_BYTES)
            at->offset = SPOOL_HEADER_BYTES;
        if (at->offset >= seg_end) {
            if (at->segment >= s->tail_segment)
                return 0;
            at->segment++;
            at->offset = SPOOL_HEADER_BYTES;
            spool_enter_segment(s, at, lost);
            continue;
        }
        if (spool_read_from(s, at->segment) < 0)
            return SPOOL_IO;
        unsigned char head[SPOOL_RECORD_HEAD];
        int got = spool_read_window(s, head, sizeof head, at->offset, seg_end);
        if (got < 0)
            return SPOOL_IO;
        uint32_t len = spool_get32(head);
        if (got == 1 && len > 0 && len <= SPOOL_RECORD_MAX &&
            at->offset + SPOOL_RECORD_HEAD + len <= seg_end) {
            if (buf_reserve(out, len) < 0) {
                buf_rollback(out, base);
                return SPOOL_IO;
            }
            char *dst = out->data + base;
            if (spool_read_window(s, dst, len, at->offset + SPOOL_RECORD_HEAD, seg_end) != 1)
                return SPOOL_IO;
            uint64_t index = spool_get64(head + 8);
            if (spool_crc(head, dst, len) == spool_get32(head + 4) && index >= at->index) {
                out->len = base + len;
                *lost += index - at->index;
                at->offset += SPOOL_RECORD_HEAD + len;
                at->index = index + 1;
                s->reader = *at;
                return 1;
            }
        }
        if (spool_skip_corrupt(s, at, seg_end) < 0)
            return SPOOL_IO;
    }
}

enum spool_status spool_confirm(struct spool *s, struct spool_pos upto, const void *state,
                                size_t state_len)
{
    unsigned char b[SPOOL_CHECKPOINT_HEAD + SPOOL_STATE_MAX + 4];
    if (state_len > SPOOL_STATE_MAX)
        state_len = SPOOL_STATE_MAX;
    uint64_t seq = s->cp_seq + 1;
    memcpy(b, SPOOL_CHECKPOINT_MAGIC, 8);
    spool_put64(b + 8, seq);
    spool_put64(b + 16, upto.segment);
    spool_put64(b + 24, upto.offset);
    spool_put64(b + 32, upto.index);
    spool_put32(b + 40, (uint32_t)state_len);
    if (state_len > 0)
        memcpy(b + SPOOL_CHECKPOINT_HEAD, state, state_len);
    size_t size = SPOOL_CHECKPOINT_HEAD + state_len;
    spool_put32(b + size, libdeflate_crc32(0, b, size));
    size += 4;
    if (spool_pwrite_all(s->cp_fd, b, size, (seq % 2) * SPOOL_CHECKPOINT_SLOT) != size ||
        fdatasync(s->cp_fd) < 0)
        return SPOOL_IO;
    s->cp_seq = seq;
    s->checkpoint = upto;
    while (s->first_segment < upto.segment && s->first_segment < s->tail_segment) {
        s->older_bytes -= spool_segment_size(s, s->first_segment);
        if (s->read_fd >= 0 && s->read_segment == s->first_segment) {
            close(s->read_fd);
            s->read_fd = -1;
            buf_rollback(&s->ahead, 0);
        }
        spool_delete_segment(s, s->first_segment);
        s->first_segment++;
    }
    return SPOOL_OK;
}

uint64_t spool_written_index(const struct spool *s)
{
    return s->written_index;
}

void spool_sync_segments(struct spool *s, int on)
{
    s->sync_on_roll = on;
}

void spool_mark_durable(struct spool *s)
{
    s->tail_durable = s->tail_whole;
    s->durable_index = s->written_index;
}

uint64_t spool_durable_index(const struct spool *s)
{
    return s->durable_index;
}

enum spool_status spool_rewind(struct spool *s)
{
    buf_rollback(&s->pending, 0);
    buf_rollback(&s->ahead, 0); /* what is written again is read again */
    if (ftruncate(s->tail_fd, (off_t)s->tail_durable) < 0)
        return SPOOL_IO;
    s->tail_size = s->tail_whole = s->tail_durable;
    if (s->tail_uncached > s->tail_durable)
        s->tail_uncached = SPOOL_PAGE_START(s->tail_durable);
    s->next_index = s->written_index = s->durable_index;
    return SPOOL_OK;
}

uint64_t spool_bytes(const struct spool *s)
{
    return s->older_bytes + s->tail_size + s->pending.len;
}

uint64_t spool_skipped(const struct spool *s)
{
    return s->skipped;
}

uint64_t spool_segments(const struct spool *s)
{
    return s->tail_segment - s->first_segment + 1;
}

int64_t spool_checkpoint_made_ms(struct spool *s)
{
    unsigned char head[SPOOL_HEADER_BYTES];
    if (s->made_segment != s->checkpoint.segment) {
        s->made_segment = s->checkpoint.segment;
        s->made_ms = spool_read_header(s, s->made_segment, head)
                         ? (int64_t)spool_get32(head + 12) * 1000 : 0;
    }
    return s->made_ms;
}
