/* UTF-8 helpers shared by the tokenizer and the streaming output: strict validation (RFC 3629: no
 * overlongs, no surrogates, nothing above U+10FFFF) with the offset of the first bad byte, decoding one
 * code point, and the longest prefix of a byte stream that does not end inside a character. */
#ifndef GM_BASE_UTF8_H
#define GM_BASE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length of the well-formed character starting at s[0..n) (1-4), or 0 if it is malformed or cut short.
 * If cp is non-NULL it receives the code point. */
size_t gm_utf8_decode(const char *s, size_t n, uint32_t *cp);

/* 1 if s[0..n) is well-formed UTF-8; otherwise 0 and *bad_offset (if non-NULL) = offset of the first
 * byte that does not start or continue a valid character. */
int gm_utf8_valid(const char *s, size_t n, size_t *bad_offset);

/* Bytes a character takes judging by its first byte: 1-4, or 1 for a byte that cannot start one
 * (so callers always make progress). */
size_t gm_utf8_char_len(unsigned char lead);

/* Longest prefix of s[0..n) that does not end in the middle of a character: a trailing lead byte with
 * too few continuation bytes after it is held back (at most 3 bytes); malformed bytes elsewhere are
 * not held back, so a stream never stalls on garbage. */
size_t gm_utf8_complete_prefix(const char *s, size_t n);

/* Encode code point cp (<= 0x10FFFF, not a surrogate) into out[4]; returns the length or 0. */
size_t gm_utf8_encode(uint32_t cp, char out[4]);

#endif
