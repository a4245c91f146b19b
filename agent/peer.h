/*
 * peer: who is on the other end of a producer connection, from the kernel
 * (SO_PEERCRED, SO_PEERGROUPS, /proc/PID/comm): whether agent.allowed_uids
 * and agent.allowed_gids let it in, and the properties agent.tag_peer adds
 * to its events ($peer_uid, $peer_gid, $peer_comm), which the agent writes
 * over any a producer sets itself.
 */
#ifndef TA_PEER_H
#define TA_PEER_H

#include <stddef.h>
#include <sys/types.h>

#define PEER_MAX_GROUPS 64
#define PEER_TAGS_LEN 160

struct peer {
    int known;                  /* the kernel said who it is */
    pid_t pid;
    uid_t uid;
    gid_t gid;
    gid_t groups[PEER_MAX_GROUPS]; /* supplementary groups, as many as fit */
    size_t ngroups;
    char comm[17];              /* the process's name, "" when unknown */
};

/* Ask the kernel who is connected on fd (peer->known 0 when it cannot say). */
void peer_identify(int fd, struct peer *peer);

/* A list of users (groups with groups set) as names or numbers, separated
 * by commas or spaces, written as numbers separated by commas into out.
 * Returns 0, or -1 naming the first entry that is no user (group) in why. */
int peer_ids_normalize(const char *text, int groups, char *out, size_t outlen, char *why,
                       size_t whylen);

/* Whether peer may write: both lists empty (anyone who can open the
 * socket), its uid in uids, or its group or one of its supplementary
 * groups in gids. The lists are normalized ones. */
int peer_allowed(const struct peer *peer, const char *uids, const char *gids);

/* The JSON members agent.tag_peer adds to the properties, without braces:
 * "$peer_uid":1000,"$peer_gid":1000,"$peer_comm":"worker". "" when the
 * peer is not known. */
void peer_tags(const struct peer *peer, char *out, size_t outlen);

/* Whether key (len bytes) is one of the names peer_tags() writes. */
int peer_is_tag_key(const char *key, size_t len);

#endif
