/* Personal-data detection: finds e-mail addresses, phone numbers, payment cards, IBANs, national ID
 * numbers, IP addresses and credentials in UTF-8 text (byte offsets) with hand-written scanners — no regex
 * library, one pass, bounded work per position — for memorization checks, the data pipeline and `gemma pii`.
 *
 * Detectors and their rules (see docs/pii.md for the measured precision and recall):
 *
 *  EMAIL        (personal) local@domain. Local part: ASCII letters, digits and . _ % + - or non-ASCII
 *               letters, 1-64 bytes, no trailing or doubled dot (leading . % + - are trimmed; the letter of
 *               a "\n"-style escape before it is not part of it). Domain: two or more labels of letters,
 *               digits and '-' (no '-' at either end, at most 63 bytes, 253 in all), non-ASCII letters
 *               allowed (IDN). The last label (TLD): an ISO 3166 code (or ac, eu, su, uk) if it has two
 *               letters; three or more ASCII letters not on a deny list of file extensions and local-only
 *               names (png, js, json, local, localhost, internal...); "xn--" punycode; or all non-ASCII.
 *               Limits: IP-literal domains (user@[192.0.2.1]), quoted local parts and characters such as
 *               ! # / = in the local part are not found; "icon@2x.png" is rejected only through the
 *               extension list; ssh remotes (git@host.com) are reported.
 *  PHONE        (personal) three forms:
 *               - international: '+' or "00", an assigned ITU country code, then digit groups separated by
 *                 single spaces, '-' or '.', with optional "(0)" trunk or "(area)" groups; 8-15 digits in
 *                 all (E.164's limit), "(0)" not counted;
 *               - North American: [1 sep] NXX sep NXX sep XXXX or [1 sep] (NXX) NXX-XXXX, N = 2-9, one
 *                 separator kind ('-', '.' or ' ');
 *               - national with trunk prefix 0: a first group of 2-5 digits (or "(0xx)", or "030/"), then
 *                 groups of one separator kind (' ', '-', '.'), either all of exactly two digits
 *                 (06 39 98 12 34, five groups or more) or all of three to eight; 9-12 digits in all.
 *               Limits: unformatted digit runs without '+' ("5551234567") and area codes starting with 0 or 1
 *               in North American form are not reported; extensions ("ext. 12") are not in the span.
 *  CARD         (sensitive) 13-19 digits, contiguous or in groups of 4 (the last 1-4) or 4-6-5 / 4-6-4, one
 *               separator kind (' ' or '-'), an issuer prefix valid for the length (Visa, Mastercard incl.
 *               2-series, Amex, Discover, JCB, Diners, UnionPay, Maestro, Mir) and the Luhn checksum. The
 *               longest plausible grouping decides: "4111 1111 1111 1111 12/29" is a card followed by a date,
 *               "4000 0079 0871 0558 256" (a 19-digit number failing Luhn) is not read as its first 16 digits.
 *  IBAN         (sensitive) country code with its registered length (ISO 13616 registry), two check digits,
 *               uppercase BBAN, electronic (compact) or print form (groups of four, single spaces), and the
 *               ISO 7064 mod-97 check (remainder 1). Limits: lowercase IBANs are not reported.
 *  NATIONAL_ID  (sensitive) rule names in gm_pii_finding.rule:
 *               - us_ssn: AAA-GG-SSSS (or spaces): area not 000, 666 or 900-999, group not 00, serial not
 *                 0000, not the voided 078-05-1120 (no checksum exists). Bare nine-digit numbers are not
 *                 reported.
 *               - uk_nino: two letters (first not D F I Q U V, second not D F I O Q U V, not BG GB KN NK NT
 *                 TN ZZ), six digits (optionally in spaced pairs), suffix A-D. No checksum exists, so
 *                 product codes of the same shape are false positives.
 *               - es_dni / es_nie: 8 digits (or X/Y/Z + 7 digits), optional '-', the mod-23 control letter.
 *               - cn_ric: 18-character resident ID: region 11-82, valid birth date 1900-2099, ISO 7064
 *                 MOD 11-2 check character (0-9 or X).
 *               - fi_hetu: DDMMYY, century sign (+ - Y X W V U A-F), 002-899, mod-31 control character,
 *                 valid date.
 *               - in_aadhaar: 12 digits in 4-4-4 groups (space or '-'), first digit 2-9, Verhoeff check.
 *  IPV4         (personal) dotted quad, each 0-255 without leading zeros; not part of a longer dotted token
 *               (1.2.3.4.5) and not right after "version " or a letter (v1.2.3.4). Limits: a four-part
 *               version number written alone (1.2.3.4) is reported; a CIDR suffix or port is not in the span.
 *  IPV6         (personal) RFC 4291 text forms: eight groups, or fewer with one "::", an embedded IPv4 tail
 *               (::ffff:192.0.2.1) and a zone id (%eth0). Not reported, because they collide with code: the
 *               bare "::", compressed forms without a decimal digit (C++ "a::b"), and compressed forms of
 *               one or two groups unless a group has a hex letter or four digits (fe80::1, 2001::) or the
 *               address is ::1 — Python slices "l[::3]", "l[1::2]" look exactly like "::3" and "1::2".
 *  PRIVATE_KEY  (sensitive) a PEM block "-----BEGIN ... PRIVATE KEY-----" (RSA, EC, DSA, OPENSSH, ENCRYPTED,
 *               PGP "... PRIVATE KEY BLOCK") through its END line with the same label, within 64 KiB: base64
 *               lines (or one line, pasted with spaces), blank lines and, before the base64, header lines
 *               with a ':' (Proc-Type, Version). Any other line ends it early: a truncated block's finding
 *               is its base64 so far. At least 32 base64 characters, so placeholders are skipped.
 *  API_KEY      (sensitive) known prefixes with their charset and length: AWS access key ids (AKIA, ASIA...),
 *               GitHub (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_), GitLab (glpat-), Slack (xoxb-...), OpenAI
 *               and Anthropic (sk-...), Stripe (sk_live_, rk_test_...), Google (AIza), Hugging Face (hf_),
 *               npm (npm_), PyPI (pypi-), SendGrid (SG.); plus rule "assigned_secret": a value of 16-512
 *               characters of [A-Za-z0-9+/=_.~-] (quoted or not, after an optional "Bearer ") following
 *               NAME = / NAME: / NAME := / NAME => where NAME contains key, secret, token, passw, pwd,
 *               credential or auth. All need a random-looking body: Shannon entropy at or above a per-rule
 *               floor (3.0-3.5 bits per character; min(3.5, 0.8 log2 n) for assigned values) and, except for
 *               AWS ids, both letters and digits, so placeholders (sk-XXXX..., AKIAXXXX...) are skipped.
 *               Limits: short or dictionary passwords ("password: hunter2") and keys without a known prefix
 *               or a telling NAME are not found.
 *
 * Boundaries: a finding never starts or ends inside a word (ASCII letters, digits, '_' or a non-ASCII
 * letter, judged by the code point; CJK, kana and hangul count as boundaries, since those scripts put
 * numbers and addresses right next to words), so "abc4111111111111111" is not a card. Numbers also may not
 * continue a dotted, dashed or slashed token ("x-123-45-6789"), the groups of a longer spaced number, or a
 * print-form IBAN-like run ("MT66 MALT 0110 ..."). Overlapping candidates: a span that contains another wins,
 * else the higher type in the order PRIVATE_KEY, API_KEY, IBAN, NATIONAL_ID, CARD, EMAIL, IPV6, IPV4, PHONE.
 * Invalid UTF-8 is scanned as bytes, never rejected. Work per position is bounded (at most 64 KiB for a PEM
 * block, a few hundred bytes otherwise, and repeated triggers never rescan), so scanning is linear. */
#ifndef GM_EVAL_PII_H
#define GM_EVAL_PII_H

#include <stddef.h>
#include <stdint.h>

#include "gemma.h"

typedef enum {
    GM_PII_EMAIL = 0,
    GM_PII_PHONE,
    GM_PII_CARD,
    GM_PII_IBAN,
    GM_PII_NATIONAL_ID,
    GM_PII_IPV4,
    GM_PII_IPV6,
    GM_PII_PRIVATE_KEY,
    GM_PII_API_KEY,
    GM_PII_N_TYPES
} gm_pii_type;

/* The report's two levels: sensitive = IDs, cards, bank accounts, credentials; personal = contact data. */
typedef enum { GM_PII_PERSONAL = 1, GM_PII_SENSITIVE = 2 } gm_pii_severity;

typedef struct gm_pii_finding {
    gm_pii_type type;
    gm_pii_severity severity;
    size_t start, end;  /* byte offsets into the text, [start, end) */
    const char *rule;   /* static name of the sub-rule that matched ("visa", "us_ssn", "ghp", ...) */
} gm_pii_finding;

typedef struct gm_pii_options {
    uint32_t types;     /* bit (1u << type) for each detector to run; 0 = all */
    int skip_local_ip;  /* 1: do not report loopback, private, link-local or unspecified addresses */
} gm_pii_options;

/* Scan text[0..len). *out (malloc'd, caller frees; NULL when *n == 0) receives non-overlapping findings
 * sorted by start. opt may be NULL (all detectors). Fails only on GM_ERR_NOMEM / GM_ERR_ARG. */
gm_status gm_pii_scan(const char *text, size_t len, const gm_pii_options *opt, gm_pii_finding **out, size_t *n);

/* Copy text with each finding's bytes replaced by "[TYPE]" (e.g. "[EMAIL]"). The findings must be sorted,
 * non-overlapping and within len (GM_ERR_ARG otherwise). *out is malloc'd and NUL-terminated. */
gm_status gm_pii_redact(const char *text, size_t len, const gm_pii_finding *f, size_t n, char **out,
                        size_t *out_len);

/* "EMAIL", "PHONE", ... as in the enum without the prefix; NULL for an invalid type. */
const char *gm_pii_type_name(gm_pii_type t);
/* The type named (as above); -1 if none. */
int gm_pii_type_from_name(const char *name);
gm_pii_severity gm_pii_type_severity(gm_pii_type t);
const char *gm_pii_severity_name(gm_pii_severity s); /* "personal" or "sensitive" */

/* Checksums, exposed for the tests. Digits only (non-digits make them return 0). */
int gm_pii_luhn_valid(const char *digits, size_t n);
/* IBAN in compact or print form (spaces ignored): registered country length and mod-97 == 1. */
int gm_pii_iban_valid(const char *s, size_t n);

#endif
