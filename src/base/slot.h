/*
 * slot: Redis Cluster's key -> hash slot function: CRC16 (XMODEM) of the key,
 * or of its {hash tag}, modulo 16384, exactly as the cluster specification
 * defines it. Works over an argument that may span evbuffer chains, without
 * pulling it up.
 */
#ifndef RG_SLOT_H
#define RG_SLOT_H

#include <stddef.h>
#include <stdint.h>

#define SLOT_COUNT 16384

struct evbuffer;
struct resp_arg;

/* The slot of a contiguous key. */
unsigned slot_of(const char *key, size_t len);

/* The slot of argument A of FRAME (a request frame, see resp.h). */
unsigned slot_of_arg(struct evbuffer *frame, const struct resp_arg *a);

/* The shortest hash tag of digits and lower-case letters whose keys
 * ("{tag}...") fall in SLOT (below SLOT_COUNT), as a C string of at most
 * SLOT_TAG_MAX bytes; the table is made at the first call. */
#define SLOT_TAG_MAX 4
const char *slot_tag(unsigned slot);

/* CRC16-XMODEM, continuing from CRC; exposed for the tests. */
uint16_t slot_crc16(uint16_t crc, const void *data, size_t len);

#endif
