/*
 * hash: one hash of a run of bytes for the agent's tables (the event
 * registry, the relay's addresses). Fast on short keys, read eight bytes
 * at a time; not for anything an attacker must not be able to collide (the
 * tables bound their probing).
 */
#ifndef TA_HASH_H
#define TA_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t hash_bytes(const void *data, size_t len);

#endif
