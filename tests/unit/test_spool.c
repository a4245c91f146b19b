/*
 * spool: the on-disk log, against real files in a temporary directory:
 * records across segments, reopening, checkpoints and segment deletion,
 * torn tails at many offsets, corrupt records in the middle, the lock, a
 * newer format, a full spool and a lost checkpoint; and, run as
 * `test_spool page-cache` (a ctest of its own), which written pages stay in
 * the page cache.
 */
#define _GNU_SOURCE
#include "check.h"
#include "spool.h"
#include "support.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEGMENT_BYTES 4096
#define MAX_BYTES (64u * 1024 * 1024)

static char dir[64];

/* Remove the test directory, if any. Returns 1 if it is gone. */
static int remove_dir(void)
{
    return !dir[0] || CHECK_EQ_INT(tmp_dir_remove(dir), 0);
}

/* A fresh, empty directory in `parent` (the last one is removed). */
static void fresh_dir_in(const char *parent)
{
    remove_dir();
    snprintf(dir, sizeof dir, "%s/spool-test-XXXXXX", parent);
    if (!CHECK(mkdtemp(dir) != NULL))
        exit(1);
}

static void fresh_dir(void)
{
    fresh_dir_in("/tmp");
}

/* Record i: "record <i>" padded with i % 97 dots, so sizes vary. */
static size_t record_text(int i, char *out, size_t size)
{
    int n = snprintf(out, size, "{\"record\":%d,\"pad\":\"", i);
    for (int k = 0; k < i % 97; k++)
        out[n++] = '.';
    n += snprintf(out + n, size - (size_t)n, "\"}");
    return (size_t)n;
}

static struct spool *open_spool(struct spool_recovery *rec)
{
    char err[512];
    struct spool *s = spool_open(dir, MAX_BYTES, SEGMENT_BYTES, rec, err, sizeof err);
    if (!CHECK(s != NULL))
        fprintf(stderr, "    %s\n", err);
    buf_free(&rec->state);
    return s;
}

static void append_records(struct spool *s, int from, int to, struct spool_pos *ends);

/* A spool in a fresh directory, or NULL (CHECKed). */
static struct spool *fresh_spool(struct spool_recovery *rec)
{
    fresh_dir();
    return open_spool(rec);
}

/* A fresh log of records 0..n-1, closed; ends[i] where record i ends.
 * Returns 1, or 0 if it could not be made. */
static int fresh_log(int n, struct spool_pos *ends)
{
    struct spool_recovery rec;
    struct spool *s = fresh_spool(&rec);
    if (s == NULL)
        return 0;
    append_records(s, 0, n, ends);
    spool_close(s);
    return 1;
}

static void append_records(struct spool *s, int from, int to, struct spool_pos *ends)
{
    char text[256];
    for (int i = from; i < to; i++) {
        size_t len = record_text(i, text, sizeof text);
        struct spool_pos end;
        CHECK_EQ_INT(spool_append(s, text, len, &end), SPOOL_OK);
        if (ends != NULL)
            ends[i] = end;
    }
    CHECK_EQ_INT(spool_write(s), SPOOL_OK);
    CHECK_EQ_INT(spool_sync(s), SPOOL_OK);
}

/* Read every record from *at on and CHECK they are `want` (ids), in order,
 * and that the records reported lost to corruption are want_lost. */
static void check_reads(struct spool *s, struct spool_pos at, const int *want, int n,
                        uint64_t want_lost)
{
    struct buf out = BUF_INIT;
    char text[256];
    int got = 0, rc;
    uint64_t lost, lost_total = 0;
    while ((rc = spool_read(s, &at, &out, &lost)) == 1) {
        lost_total += lost;
        if (got < n) {
            size_t len = record_text(want[got], text, sizeof text);
            check_context("record #%d (id %d)", got, want[got]);
            CHECK_MEM_EQ(out.data, out.len, text, len);
            check_context(NULL);
        }
        got++;
    }
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(got, n);
    CHECK_EQ_INT(lost_total, want_lost); /* the records corruption took, told by the indexes */
    buf_free(&out);
}

static void check_reads_range(struct spool *s, struct spool_pos at, int from, int to)
{
    int *ids = malloc(sizeof *ids * (size_t)(to - from + 1));
    for (int i = from; i < to; i++)
        ids[i - from] = i;
    check_reads(s, at, ids, to - from, 0);
    free(ids);
}

static int count_segments(void)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".seg") != NULL;
    if (d != NULL)
        closedir(d);
    return n;
}

static void segment_path(uint64_t id, char *path, size_t size)
{
    snprintf(path, size, "%s/%016llx.seg", dir, (unsigned long long)id);
}

static void test_records_across_segments_and_reopen(void)
{
    struct spool_recovery rec;
    struct spool *s = fresh_spool(&rec);
    if (s == NULL)
        return;
    CHECK_EQ_UINT(rec.backlog_bytes, 0);
    static struct spool_pos ends[600];
    append_records(s, 0, 600, ends);
    CHECK_GT(count_segments(), 5);
    check_reads_range(s, spool_checkpoint(s), 0, 600);
    uint64_t bytes = spool_bytes(s);
    spool_close(s);

    s = open_spool(&rec);
    if (s == NULL)
        return;
    CHECK_EQ_UINT(rec.torn_bytes, 0);
    CHECK_EQ_UINT(spool_bytes(s), bytes);
    CHECK_EQ_UINT(rec.backlog_bytes, bytes - SPOOL_HEADER_BYTES);
    check_reads_range(s, spool_checkpoint(s), 0, 600);

    /* the backend confirmed the first 400: their whole segments go */
    int before = count_segments();
    CHECK_EQ_INT(spool_confirm(s, ends[399], NULL, 0), SPOOL_OK);
    CHECK_LT(count_segments(), before);
    CHECK_LT(spool_bytes(s), bytes);
    check_reads_range(s, spool_checkpoint(s), 400, 600);
    append_records(s, 600, 650, NULL); /* and appending goes on */
    spool_close(s);

    s = open_spool(&rec);
    if (s == NULL)
        return;
    CHECK_EQ_UINT(rec.checkpoint_lost, 0);
    check_reads_range(s, spool_checkpoint(s), 400, 650);
    spool_close(s);
}

/* A crash mid-write leaves the last segment cut anywhere: recovery keeps
 * every whole record before the cut, drops the rest, counts it, and the
 * log goes on from there. */
static void test_torn_tail_at_every_kind_of_offset(void)
{
    static const int cuts[] = {1, 3, 7, 8, 9, 20, -1}; /* bytes into the last record */
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        static struct spool_pos ends[40];
        if (!fresh_log(40, ends))
            return;
        /* the last record starts where record 38 ends */
        struct spool_pos last = ends[38];
        uint64_t cut = cuts[c] < 0 ? ends[39].offset - 1 : last.offset + (uint64_t)cuts[c];
        char path[128];
        segment_path(last.segment, path, sizeof path);
        check_context("cut %d bytes into the last record", cuts[c]);
        CHECK_EQ_INT(truncate(path, (off_t)cut), 0);
        struct spool_recovery rec;
        struct spool *s = open_spool(&rec);
        if (s == NULL)
            return;
        CHECK_EQ_UINT(rec.torn_bytes, cut - last.offset);
        check_reads_range(s, spool_checkpoint(s), 0, 39);
        append_records(s, 100, 101, NULL);
        int want[40];
        for (int i = 0; i < 39; i++)
            want[i] = i;
        want[39] = 100;
        check_reads(s, spool_checkpoint(s), want, 40, 0);
        check_context(NULL);
        spool_close(s);
    }
}

/* A record damaged in the middle of the log is skipped (and counted); every
 * record around it is delivered, in an older segment and in the last one. */
static void test_corrupt_records_in_the_middle_are_skipped(void)
{
    static struct spool_pos ends[300];
    if (!fresh_log(300, ends))
        return;
    int victims[] = {5, 298}; /* one in the first segment, one in the last */
    for (int v = 0; v < 2; v++) {
        struct spool_pos at = ends[victims[v] - 1];
        char path[128];
        segment_path(ends[victims[v]].segment, path, sizeof path);
        if (at.segment != ends[victims[v]].segment)
            at.offset = SPOOL_HEADER_BYTES;
        int fd = open(path, O_RDWR);
        char byte;
        CHECK_EQ_INT(pread(fd, &byte, 1, (off_t)at.offset + 12), 1);
        byte ^= 0x5a;
        CHECK_EQ_INT(pwrite(fd, &byte, 1, (off_t)at.offset + 12), 1);
        close(fd);
    }
    struct spool_recovery rec;
    struct spool *s = open_spool(&rec);
    if (s == NULL)
        return;
    CHECK_EQ_UINT(rec.torn_bytes, 0); /* valid records follow: not a torn tail */
    int want[298], n = 0;
    for (int i = 0; i < 300; i++)
        if (i != 5 && i != 298)
            want[n++] = i;
    check_reads(s, spool_checkpoint(s), want, n, 2);
    CHECK_GT(spool_skipped(s), 0);
    spool_close(s);
}

static void test_a_second_agent_is_refused(void)
{
    struct spool_recovery rec;
    struct spool *s = fresh_spool(&rec);
    if (s == NULL)
        return;
    char err[512], pid[32];
    struct spool *second = spool_open(dir, MAX_BYTES, SEGMENT_BYTES, &rec, err, sizeof err);
    CHECK(second == NULL);
    CHECK_CONTAINS(err, "in use by another agent");
    snprintf(pid, sizeof pid, "pid %d", (int)getpid());
    CHECK_CONTAINS(err, pid);
    CHECK_CONTAINS(err, dir);
    spool_close(second);
    spool_close(s);
    s = open_spool(&rec); /* the lock goes with the first */
    spool_close(s);
}

static void test_a_newer_format_is_refused(void)
{
    fresh_dir();
    char path[128];
    segment_path(7, path, sizeof path);
    unsigned char head[SPOOL_HEADER_BYTES] = "TASPOOL";
    head[8] = SPOOL_FORMAT_VERSION + 1;
    FILE *f = fopen(path, "wb");
    fwrite(head, 1, sizeof head, f);
    fclose(f);
    char err[512];
    struct spool_recovery rec;
    CHECK(spool_open(dir, MAX_BYTES, SEGMENT_BYTES, &rec, err, sizeof err) == NULL);
    CHECK_CONTAINS(err, "0000000000000007.seg");
    CHECK_CONTAINS(err, "newer");
    CHECK_CONTAINS(err, "allowed: format 1");
}

static void test_a_full_spool_takes_nothing(void)
{
    fresh_dir();
    char err[512];
    struct spool_recovery rec;
    struct spool *s = spool_open(dir, 1000, SEGMENT_BYTES, &rec, err, sizeof err);
    if (!CHECK(s != NULL))
        return;
    char text[256];
    struct spool_pos end;
    int taken = 0;
    enum spool_status st;
    while ((st = spool_append(s, text, record_text(90, text, sizeof text), &end)) == SPOOL_OK)
        taken++;
    CHECK_EQ_INT(st, SPOOL_FULL);
    CHECK_GT(taken, 5);
    CHECK_LE(spool_bytes(s) - SPOOL_HEADER_BYTES, 1000);
    CHECK_EQ_INT(spool_write(s), SPOOL_OK);
    int want[64];
    for (int i = 0; i < taken && i < 64; i++)
        want[i] = 90;
    check_reads(s, spool_checkpoint(s), want, taken, 0);
    /* confirming everything makes room again */
    CHECK_EQ_INT(spool_confirm(s, end, NULL, 0), SPOOL_OK);
    CHECK_EQ_INT(spool_append(s, text, record_text(90, text, sizeof text), &end), SPOOL_OK);
    spool_close(s);
}

/* spool.max_bytes bounds the unconfirmed records as the agent counts them
 * (SPOOL_RECORD_HEAD and the payload each) however many segments hold
 * them: their headers do not count. */
static void test_the_bound_counts_records_not_segment_headers(void)
{
    fresh_dir();
    char err[512];
    struct spool_recovery rec;
    struct spool *s = spool_open(dir, 2000, 300, &rec, err, sizeof err);
    if (!CHECK(s != NULL))
        return;
    char text[256];
    size_t len = record_text(90, text, sizeof text);
    struct spool_pos end;
    size_t taken = 0;
    while (spool_append(s, text, len, &end) == SPOOL_OK)
        taken++;
    CHECK_EQ_UINT(taken, 2000 / (SPOOL_RECORD_HEAD + len));
    CHECK_GT(spool_segments(s), 5);
    spool_close(s);
}

/* Records delivered before they were durable and then cut by a rewind
 * (a later write failed) leave the checkpoint past the end of the log:
 * there is room, and they are appended again to the same places. */
static void test_a_rewind_behind_the_checkpoint_takes_the_records_again(void)
{
    struct spool_recovery rec;
    struct spool *s = fresh_spool(&rec);
    if (s == NULL)
        return;
    struct spool_pos ends[5], again[5];
    append_records(s, 0, 5, ends); /* written, never marked durable */
    CHECK_EQ_INT(spool_confirm(s, ends[4], NULL, 0), SPOOL_OK);
    CHECK_EQ_INT(spool_rewind(s), SPOOL_OK);
    append_records(s, 0, 5, again);
    CHECK_EQ_UINT(again[4].offset, ends[4].offset);
    CHECK_EQ_UINT(again[4].index, ends[4].index);
    spool_close(s);
}

/* Write garbage over one of the checkpoint file's two slots. */
static void damage_checkpoint_slot(int slot)
{
    char path[128];
    snprintf(path, sizeof path, "%s/checkpoint", dir);
    FILE *f = fopen(path, "r+b");
    if (!CHECK(f != NULL))
        return;
    fseek(f, slot * 8192L + 20, SEEK_SET);
    fputs("garbage", f);
    fclose(f);
}

/* A fresh log of records 0..19, confirmed up to each of `upto` in turn,
 * closed. Returns 1, or 0 if it could not be made. */
static int confirmed_log(const int *upto, int n)
{
    static struct spool_pos ends[20];
    struct spool_recovery rec;
    struct spool *s = fresh_spool(&rec);
    if (s == NULL)
        return 0;
    append_records(s, 0, 20, ends);
    for (int i = 0; i < n; i++)
        CHECK_EQ_INT(spool_confirm(s, ends[upto[i]], NULL, 0), SPOOL_OK);
    spool_close(s);
    return 1;
}

static void test_a_lost_checkpoint_rereads_from_the_start(void)
{
    static const int upto[] = {9};
    struct spool_recovery rec;
    struct spool *s;
    if (!confirmed_log(upto, 1))
        return;
    damage_checkpoint_slot(0);
    damage_checkpoint_slot(1);
    s = open_spool(&rec);
    if (s == NULL)
        return;
    CHECK_EQ_INT(rec.checkpoint_lost, 1);
    check_reads_range(s, spool_checkpoint(s), 0, 20); /* duplicates, never a loss */
    spool_close(s);
}

/* The checkpoint is written to its two slots in turn: a torn write of the
 * newer leaves the older, and reading starts there (duplicates, no loss). */
static void test_a_torn_checkpoint_falls_back_to_the_previous_one(void)
{
    static const int upto[] = {4, 9}; /* slot 1, then slot 0 */
    struct spool_recovery rec;
    if (!confirmed_log(upto, 2))
        return;
    struct spool *s = open_spool(&rec);
    if (s == NULL)
        return;
    CHECK_EQ_UINT(spool_checkpoint(s).index, 10);
    spool_close(s);
    damage_checkpoint_slot(0);
    s = open_spool(&rec);
    if (s == NULL)
        return;
    CHECK_EQ_INT(rec.checkpoint_lost, 0);
    check_reads_range(s, spool_checkpoint(s), 5, 20);
    spool_close(s);
}

/* A reader that caught up with the last segment goes on into the next one
 * when it rolls over, losing nothing: the segment it was reading grew after
 * it first looked at its size. */
static void test_a_reader_at_the_tail_follows_it_into_the_next_segment(void)
{
    struct spool_recovery rec;
    struct spool *s = fresh_spool(&rec);
    if (s == NULL)
        return;
    struct buf out = BUF_INIT;
    struct spool_pos at = spool_checkpoint(s);
    uint64_t lost, lost_total = 0;
    int got = 0;
    for (int round = 0; round < 30; round++) {
        append_records(s, round * 7, round * 7 + 7, NULL);
        while (spool_read(s, &at, &out, &lost) == 1)
            got++, lost_total += lost;
        lost_total += lost;
    }
    CHECK_GT(count_segments(), 3);
    CHECK_EQ_INT(got, 30 * 7);
    CHECK_EQ_UINT(lost_total, 0);
    CHECK_EQ_UINT(at.index, 30 * 7);
    buf_free(&out);
    spool_close(s);
}

/* Records larger than the reader's read-ahead window, between small ones,
 * read back whole and in order. */
static void test_records_larger_than_the_read_ahead(void)
{
    struct spool_recovery rec;
    struct spool *s = fresh_spool(&rec);
    if (s == NULL)
        return;
    enum { N = 6, BIG = 300 * 1024 };
    char *texts[N];
    size_t lens[N];
    struct spool_pos end;
    for (int i = 0; i < N; i++) {
        lens[i] = i % 2 ? BIG + (size_t)i : 20 + (size_t)i;
        texts[i] = malloc(lens[i]);
        memset(texts[i], 'a' + i, lens[i]);
        CHECK_EQ_INT(spool_append(s, texts[i], lens[i], &end), SPOOL_OK);
    }
    CHECK_EQ_INT(spool_write(s), SPOOL_OK);
    struct spool_pos at = {0};
    struct buf out = BUF_INIT;
    uint64_t lost;
    int got = 0;
    while (got < N && spool_read(s, &at, &out, &lost) == 1) {
        CHECK_MEM_EQ(out.data, out.len, texts[got], lens[got]);
        got++;
    }
    CHECK_EQ_INT(got, N);
    for (int i = 0; i < N; i++)
        free(texts[i]);
    buf_free(&out);
    spool_close(s);
}

/* The state kept with the checkpoint, and the record indexes, come back
 * after a reopen. */
static void test_the_checkpoint_keeps_its_state_and_indexes(void)
{
    struct spool_recovery rec;
    struct spool *s = fresh_spool(&rec);
    if (s == NULL)
        return;
    static struct spool_pos ends[50];
    append_records(s, 0, 50, ends);
    CHECK_EQ_UINT(ends[49].index, 50);
    CHECK_EQ_INT(spool_confirm(s, ends[19], "counters", 8), SPOOL_OK);
    spool_close(s);
    char err[512];
    s = spool_open(dir, MAX_BYTES, SEGMENT_BYTES, &rec, err, sizeof err);
    if (!CHECK(s != NULL))
        return;
    CHECK_MEM_EQ(rec.state.data, rec.state.len, "counters", 8);
    CHECK_EQ_UINT(rec.checkpoint.index, 20);
    CHECK_EQ_UINT(rec.end_index, 50);
    buf_free(&rec.state);
    check_reads_range(s, spool_checkpoint(s), 20, 50);
    spool_close(s);
}

/* How many of the pages of file `name` in dir, from byte `from` on, are
 * in the page cache (-1: could not tell). */
static long cached_pages(const char *name, size_t from)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (!CHECK(fd >= 0 && fstat(fd, &st) == 0)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t size = (size_t)st.st_size, pages = (size + 4095) / 4096;
    void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    unsigned char *vec = malloc(pages);
    long count = -1;
    if (CHECK(map != MAP_FAILED && vec != NULL && mincore(map, size, vec) == 0)) {
        count = 0;
        for (size_t i = from / 4096; i < pages; i++)
            count += vec[i] & 1;
    }
    if (map != MAP_FAILED)
        munmap(map, size);
    free(vec);
    close(fd);
    return count;
}

/* Appends n records of about 1 KiB from id `from`, written and synced. */
static void append_kib_records(struct spool *s, int from, int n)
{
    char text[1024];
    memset(text, 'x', sizeof text);
    for (int i = from; i < from + n; i++) {
        int head = snprintf(text, sizeof text, "{\"record\":%d,", i);
        text[head] = ' ';
        struct spool_pos end;
        CHECK_EQ_INT(spool_append(s, text, sizeof text, &end), SPOOL_OK);
    }
    CHECK_EQ_INT(spool_write(s), SPOOL_OK);
    CHECK_EQ_INT(spool_sync(s), SPOOL_OK);
}

/* Pages written and made durable leave the page cache when the reader is
 * far behind them (megabytes), and stay while it is close behind. The
 * directory is in the test's working directory (the build's, usually on a
 * disk: /tmp may be a tmpfs, whose pages cannot leave). */
static void test_durable_pages_far_ahead_of_the_reader_leave_the_cache(void)
{
    fresh_dir_in(".");
    struct spool_recovery rec;
    char err[512];
    struct spool *s = spool_open(dir, 256u << 20, 64u << 20, &rec, err, sizeof err);
    if (!CHECK(s != NULL))
        return;
    const char *seg = "0000000000000001.seg";
    enum { FAR = 6 * 1024, NEAR = 512 };
    append_kib_records(s, 0, FAR); /* about 6 MiB ahead of a reader at the start */
    CHECK(cached_pages(seg, 0) <= 1); /* the last page, partly written, may stay */

    struct spool_pos at = spool_checkpoint(s);
    struct buf out = BUF_INIT;
    uint64_t lost;
    int got = 0;
    while (spool_read(s, &at, &out, &lost) == 1)
        got++;
    CHECK_EQ_INT(got, FAR);
    struct stat st;
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, seg);
    CHECK_EQ_INT(stat(path, &st), 0);
    append_kib_records(s, FAR, NEAR); /* half a MiB ahead of the reader, at the end */
    long near_pages = NEAR * (1024 + SPOOL_RECORD_HEAD) / 4096;
    CHECK_GT(cached_pages(seg, (size_t)st.st_size + 4096), near_pages - 2);
    buf_free(&out);
    spool_close(s);
}

/* Does the filesystem of dir let written, synced pages leave the page
 * cache on POSIX_FADV_DONTNEED? (A tmpfs cannot; an overlay, as in a
 * container's build, may not pass the hint on.) */
static int dir_drops_pages(void)
{
    static char block[1 << 20];
    char path[128];
    snprintf(path, sizeof path, "%s/probe", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int ok = fd >= 0 && write(fd, block, sizeof block) == (ssize_t)sizeof block &&
             fdatasync(fd) == 0 && posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0;
    if (fd >= 0)
        close(fd);
    long left = ok ? cached_pages("probe", 0) : -1;
    unlink(path);
    return left >= 0 && left < 16;
}

/* `test_spool page-cache`: the page-cache test alone, a ctest of its own
 * that reports itself skipped (77) where the filesystem cannot show it. */
static int page_cache_main(void)
{
    fresh_dir_in(".");
    if (!dir_drops_pages()) {
        printf("skipped: the filesystem of %s keeps written pages cached after "
               "POSIX_FADV_DONTNEED (a tmpfs, or an overlay that does not pass the hint on), "
               "so which pages the spool drops cannot be seen here\n", dir);
        return remove_dir() ? 77 : 1;
    }
    RUN(test_durable_pages_far_ahead_of_the_reader_leave_the_cache);
    remove_dir();
    return check_finish();
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "page-cache") == 0)
        return page_cache_main();
    RUN(test_records_across_segments_and_reopen);
    RUN(test_torn_tail_at_every_kind_of_offset);
    RUN(test_corrupt_records_in_the_middle_are_skipped);
    RUN(test_a_second_agent_is_refused);
    RUN(test_a_newer_format_is_refused);
    RUN(test_a_full_spool_takes_nothing);
    RUN(test_the_bound_counts_records_not_segment_headers);
    RUN(test_a_rewind_behind_the_checkpoint_takes_the_records_again);
    RUN(test_a_lost_checkpoint_rereads_from_the_start);
    RUN(test_a_torn_checkpoint_falls_back_to_the_previous_one);
    RUN(test_a_reader_at_the_tail_follows_it_into_the_next_segment);
    RUN(test_records_larger_than_the_read_ahead);
    RUN(test_the_checkpoint_keeps_its_state_and_indexes);
    remove_dir();
    return check_finish();
}
