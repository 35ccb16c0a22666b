/* CRC-32C of message bodies and journal records (crc32c.c). */
#ifndef SK_SPOOL_CRC32C_H
#define SK_SPOOL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of n octets continuing from crc (0 to start), as stored in the
 * envelope's body-crc32c line. The _soft form never uses the CPU's
 * instruction (tests compare the two). */
uint32_t sk_spool_crc32c(uint32_t crc, const void *p, size_t n);
uint32_t sk_spool_crc32c_soft(uint32_t crc, const void *p, size_t n);

#endif
