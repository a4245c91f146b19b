/*
 * peer: the producer's identity and what it may do (see peer.h).
 */
#define _GNU_SOURCE /* struct ucred, SO_PEERGROUPS */
#include "peer.h"

#include "buf.h"
#include "json.h"

#include <ctype.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *const peer_tag_keys[] = {"$peer_uid", "$peer_gid", "$peer_comm"};

static void peer_read_comm(pid_t pid, char *out, size_t outlen)
{
    char path[64];
    out[0] = '\0';
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, out, outlen - 1);
    close(fd);
    if (n <= 0)
        return;
    out[n] = '\0';
    out[strcspn(out, "\n")] = '\0';
}

void peer_identify(int fd, struct peer *peer)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    memset(peer, 0, sizeof *peer);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return;
    peer->known = 1;
    peer->pid = cred.pid;
    peer->uid = cred.uid;
    peer->gid = cred.gid;
    socklen_t size = sizeof peer->groups;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, peer->groups, &size) == 0)
        peer->ngroups = size / sizeof peer->groups[0];
    peer_read_comm(cred.pid, peer->comm, sizeof peer->comm);
}

/* One entry of a list: a number, or a name looked up. */
static int peer_id_of(const char *name, int groups, unsigned long *id)
{
    char *end;
    if (isdigit((unsigned char)name[0])) {
        unsigned long n = strtoul(name, &end, 10);
        if (*end == '\0' && n < (unsigned long)(uid_t)-1) {
            *id = n;
            return 0;
        }
        return -1;
    }
    if (groups) {
        struct group *g = getgrnam(name);
        return g ? (*id = g->gr_gid, 0) : -1;
    }
    struct passwd *u = getpwnam(name);
    return u ? (*id = u->pw_uid, 0) : -1;
}

int peer_ids_normalize(const char *text, int groups, char *out, size_t outlen, char *why,
                       size_t whylen)
{
    size_t n = 0;
    out[0] = '\0';
    const char *p = text;
    while (*p != '\0') {
        size_t skip = strspn(p, ", \t");
        p += skip;
        size_t len = strcspn(p, ", \t");
        if (len == 0)
            break;
        char name[256];
        unsigned long id;
        snprintf(name, sizeof name, "%.*s", (int)len, p);
        if (len >= sizeof name || peer_id_of(name, groups, &id) < 0) {
            snprintf(why, whylen, "'%s' is no %s here", name, groups ? "group" : "user");
            return -1;
        }
        int m = snprintf(out + n, outlen - n, "%s%lu", n ? "," : "", id);
        if (m < 0 || (size_t)m >= outlen - n) {
            snprintf(why, whylen, "the list is too long");
            return -1;
        }
        n += (size_t)m;
        p += len;
    }
    return 0;
}

/* Whether id is in the normalized list "1,2,3". */
static int peer_in_list(const char *list, unsigned long id)
{
    for (const char *p = list; *p != '\0';) {
        char *end;
        unsigned long n = strtoul(p, &end, 10);
        if (end == p)
            return 0;
        if (n == id)
            return 1;
        p = *end == ',' ? end + 1 : end;
    }
    return 0;
}

int peer_allowed(const struct peer *peer, const char *uids, const char *gids)
{
    if (uids[0] == '\0' && gids[0] == '\0')
        return 1;
    if (!peer->known)
        return 0;
    if (peer_in_list(uids, peer->uid) || peer_in_list(gids, peer->gid))
        return 1;
    for (size_t i = 0; i < peer->ngroups; i++)
        if (peer_in_list(gids, peer->groups[i]))
            return 1;
    return 0;
}

void peer_tags(const struct peer *peer, char *out, size_t outlen)
{
    out[0] = '\0';
    if (!peer->known)
        return;
    struct buf b = buf_borrow(out, outlen);
    char numbers[64];
    snprintf(numbers, sizeof numbers, "\"%s\":%lu,\"%s\":%lu,\"%s\":", peer_tag_keys[0],
             (unsigned long)peer->uid, peer_tag_keys[1], (unsigned long)peer->gid,
             peer_tag_keys[2]);
    buf_append_str(&b, numbers);
    json_write_string(&b, peer->comm, strlen(peer->comm));
    buf_append_char(&b, '\0');
    if (b.failed)
        out[0] = '\0';
}

int peer_is_tag_key(const char *key, size_t len)
{
    for (size_t i = 0; i < sizeof peer_tag_keys / sizeof peer_tag_keys[0]; i++)
        if (strlen(peer_tag_keys[i]) == len && memcmp(peer_tag_keys[i], key, len) == 0)
            return 1;
    return 0;
}
