/* PII detectors: checksums (Luhn on the processors' published test cards, mod-97 on the ISO 13616 registry's
 * IBAN examples), SSN rules, IPv6 forms, PEM blocks, API-key prefixes with their entropy floor, boundaries and
 * UTF-8 offsets, redaction, and per-detector precision and recall on the labeled synthetic set
 * tests/data/pii/labeled.jsonl (tools/ref/make_pii_set.py). Matching rule: a finding is a true positive only
 * if a labeled span has the same type and exactly the same byte start and end; every other finding is a
 * false positive and every unmatched labeled span a false negative. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/json.h"
#include "eval/pii.h"
#include "testlib.h"

static gm_pii_finding *scan(const char *text, size_t *n) {
    gm_pii_finding *f = NULL;
    *n = 0;
    CHECK_OK(gm_pii_scan(text, strlen(text), NULL, &f, n));
    return f;
}

/* The text holds exactly one finding, of this type, covering exactly `want` (its first occurrence). */
#define EXPECT(text, type, want) expect_one(__LINE__, text, type, want)
static void expect_one(int line, const char *text, gm_pii_type type, const char *want) {
    size_t n;
    gm_pii_finding *f = scan(text, &n);
    const char *w = strstr(text, want);
    size_t ws = w ? (size_t)(w - text) : 0, we = ws + strlen(want);
    int ok = w && n == 1 && f[0].type == type && f[0].start == ws && f[0].end == we;
    CHECKF(ok, "line %d: \"%s\": want one %s at %zu-%zu, got %zu finding(s)%s%s %zu-%zu", line, text,
           gm_pii_type_name(type), ws, we, n, n ? ", first " : "", n ? gm_pii_type_name(f[0].type) : "",
           n ? f[0].start : 0, n ? f[0].end : 0);
    free(f);
}

#define NONE(text) expect_none(__LINE__, text)
static void expect_none(int line, const char *text) {
    size_t n;
    gm_pii_finding *f = scan(text, &n);
    CHECKF(n == 0, "line %d: \"%s\": want nothing, got %zu finding(s), first %s \"%.*s\"", line, text, n,
           n ? gm_pii_type_name(f[0].type) : "", n ? (int)(f[0].end - f[0].start) : 0, n ? text + f[0].start : "");
    free(f);
}

static void test_luhn(void) {
    static const char *const GOOD[] = {"4111111111111111", "4012888888881881", "4222222222222", "5555555555554444",
                                       "5105105105105100", "2223003122003222", "378282246310005", "371449635398431",
                                       "378734493671000", "6011111111111117", "6011000990139424", "3530111333300000",
                                       "3566002020360505", "30569309025904",   "38520000023237",  "6200000000000005",
                                       "79927398713", "0"};
    for (size_t i = 0; i < sizeof GOOD / sizeof GOOD[0]; i++)
        CHECKF(gm_pii_luhn_valid(GOOD[i], strlen(GOOD[i])), "%s", GOOD[i]);
    static const char *const BAD[] = {"4111111111111112", "79927398710", "5555555555554443", "378282246310006", "1",
                                      "4111-1111-1111-1111", ""};
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++)
        CHECKF(!gm_pii_luhn_valid(BAD[i], strlen(BAD[i])), "%s", BAD[i]);
    /* every single-digit change of a valid number breaks it */
    char d[] = "4012888888881881";
    for (int k = 0; k < 16; k++) {
        char o = d[k];
        for (char c = '0'; c <= '9'; c++) {
            if (c == o) continue;
            d[k] = c;
            CHECKF(!gm_pii_luhn_valid(d, 16), "%s", d);
        }
        d[k] = o;
    }
    /* so are adjacent transpositions (except 09 <-> 90, Luhn's known blind spot) */
    char t[] = "4012888888881881";
    char u = t[3];
    t[3] = t[4];
    t[4] = u;
    CHECK(!gm_pii_luhn_valid(t, 16));
    CHECK(gm_pii_luhn_valid("091", 3) && gm_pii_luhn_valid("901", 3));
}

static void test_iban(void) {
    /* examples from the ISO 13616 IBAN registry documentation */
    static const char *const GOOD[] = {
        "GB82WEST12345698765432", "GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "DE89 3704 0044 0532 0130 00",
        "FR1420041010050500013M02606", "NL91ABNA0417164300", "BE68539007547034", "CH9300762011623852957",
        "AT611904300234573201", "ES9121000418450200051332", "IT60X0542811101000000123456", "NO9386011117947",
        "DK5000400440116243", "FI2112345600000785", "SE4550000000058398257466", "PL61109010140000071219812874",
        "MT84MALT011000012345MTLCAST001S", "SA0380000000608010167519", "BR1800360305000010009795493C1",
        "KW81CBKU0000000000001234560101", "LC55HEMM000100010012001200023015", "RU0204452560040702810412345678901"};
    for (size_t i = 0; i < sizeof GOOD / sizeof GOOD[0]; i++)
        CHECKF(gm_pii_iban_valid(GOOD[i], strlen(GOOD[i])), "%s", GOOD[i]);
    static const char *const BAD[] = {
        "GB83WEST12345698765432",  /* check digits */
        "GB82WEST12345698765433",  /* one digit */
        "GB82WEST1234569876543",   /* too short for GB */
        "DE89370400440532013001", "DE8937040044053201300",  "ZZ89370400440532013000", /* no such country */
        "GB82west12345698765432", /* lowercase */
        "NL91ABNA0417164301", "gb82WEST12345698765432", ""};
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++)
        CHECKF(!gm_pii_iban_valid(BAD[i], strlen(BAD[i])), "%s", BAD[i]);
    EXPECT("IBAN: GB82 WEST 1234 5698 7654 32.", GM_PII_IBAN, "GB82 WEST 1234 5698 7654 32");
    EXPECT("pay DE89370400440532013000 now", GM_PII_IBAN, "DE89370400440532013000");
    NONE("pay DE88370400440532013000 now");
    NONE("pay DE89 3704 0044 0532 0130 01 now");
    NONE("XDE89370400440532013000");
}

static void test_cards(void) {
    EXPECT("card 4111 1111 1111 1111 exp 12/29", GM_PII_CARD, "4111 1111 1111 1111");
    EXPECT("card 4111-1111-1111-1111.", GM_PII_CARD, "4111-1111-1111-1111");
    EXPECT("amex 3782 822463 10005", GM_PII_CARD, "3782 822463 10005");
    EXPECT("(5555555555554444)", GM_PII_CARD, "5555555555554444");
    EXPECT("visa13: 4222222222222;", GM_PII_CARD, "4222222222222");
    NONE("card 4111 1111 1111 1112");         /* Luhn */
    NONE("id 1234567812345670");              /* Luhn-valid but no issuer starts with 1 */
    NONE("x4111111111111111");                /* inside a word */
    NONE("41111111111111111111");             /* 20 digits */
    NONE("4111-1111-1111-1111-2222");         /* part of a longer dashed number */
    NONE("411 1111 1111 1111 1");             /* wrong grouping */
    NONE("ISBN 978-3-16-148410-0");
}

static void test_ssn_and_ids(void) {
    EXPECT("SSN 123-45-6789.", GM_PII_NATIONAL_ID, "123-45-6789");
    EXPECT("SSN 665 12 3456", GM_PII_NATIONAL_ID, "665 12 3456");
    NONE("SSN 000-45-6789");  /* area 000 */
    NONE("SSN 666-45-6789");  /* area 666 */
    NONE("SSN 900-45-6789");  /* areas 900-999 */
    NONE("SSN 987-65-4321");
    NONE("SSN 123-00-6789");  /* group 00 */
    NONE("SSN 123-45-0000");  /* serial 0000 */
    NONE("SSN 078-05-1120");  /* the voided Woolworth number */
    NONE("SSN 123456789");    /* bare nine digits: not reported */
    NONE("tel 123-45-67890"); /* too long */
    EXPECT("NINO AB 12 34 56 C", GM_PII_NATIONAL_ID, "AB 12 34 56 C");
    EXPECT("NINO: JG103759A.", GM_PII_NATIONAL_ID, "JG103759A");
    NONE("NINO QQ123456C");   /* Q is never a first letter */
    NONE("NINO GB123456A");   /* unallocated prefix */
    NONE("NINO AB123456E");   /* suffix A-D only */
    EXPECT("DNI 12345678Z", GM_PII_NATIONAL_ID, "12345678Z");
    EXPECT("NIE X1234567L,", GM_PII_NATIONAL_ID, "X1234567L");
    NONE("DNI 12345678A");
    EXPECT("身份证11010519491231002X。", GM_PII_NATIONAL_ID, "11010519491231002X");
    NONE("身份证110105194912310021。"); /* wrong check digit */
    NONE("id 110105194913310023");      /* month 13 */
    EXPECT("HETU 131052-308T", GM_PII_NATIONAL_ID, "131052-308T");
    NONE("HETU 131052-308U");
    EXPECT("Aadhaar 2345 6789 0124", GM_PII_NATIONAL_ID, "2345 6789 0124");
    NONE("Aadhaar 2345 6789 0123"); /* Verhoeff */
    NONE("Aadhaar 1345 6789 0124"); /* never starts with 0 or 1 */
}

static void test_ip(void) {
    EXPECT("from 192.0.2.1.", GM_PII_IPV4, "192.0.2.1");
    EXPECT("http://198.51.100.7:8080/x", GM_PII_IPV4, "198.51.100.7");
    EXPECT("net 203.0.113.0/24", GM_PII_IPV4, "203.0.113.0");
    NONE("version 1.2.3.4.5");
    NONE("v1.2.3.4");
    NONE("version 1.2.3.4");
    NONE("256.1.1.1 and 1.2.3");
    NONE("01.02.03.04");       /* leading zeros */
    NONE("build 10.0.19045.2965");
    EXPECT("addr 2001:db8:85a3:0:0:8a2e:370:7334 ok", GM_PII_IPV6, "2001:db8:85a3:0:0:8a2e:370:7334");
    EXPECT("addr 2001:db8::1 ok", GM_PII_IPV6, "2001:db8::1");
    EXPECT("loopback ::1", GM_PII_IPV6, "::1");
    EXPECT("[2001:DB8::8:800:200C:417A]:443", GM_PII_IPV6, "2001:DB8::8:800:200C:417A");
    EXPECT("mapped ::ffff:192.0.2.128 here", GM_PII_IPV6, "::ffff:192.0.2.128");
    EXPECT("nat64 64:ff9b::198.51.100.1", GM_PII_IPV6, "64:ff9b::198.51.100.1");
    EXPECT("link fe80::1ff:fe23:4567:890a%eth0 up", GM_PII_IPV6, "fe80::1ff:fe23:4567:890a%eth0");
    EXPECT("scoped ff02::1%3", GM_PII_IPV6, "ff02::1%3");
    EXPECT("prefix 2001:db8:: only", GM_PII_IPV6, "2001:db8::");
    NONE("the :: operator");           /* bare unspecified address */
    NONE("std::cout << a::b;");        /* C++ scopes */
    NONE("x :: Int -> Int");
    NONE("12:34:56");                  /* a time */
    NONE("00:1A:2B:3C:4D:5E");         /* a MAC address */
    NONE("1::2::3");                   /* two :: */
    NONE("1:2:3:4:5:6:7:8:9");         /* nine groups */
    NONE("2001:db8::12345");           /* a five-digit group */
    NONE("l[::3] = sorted(l[1::2]); x[10::20]"); /* Python slices */
    EXPECT("gw fe80::2 up", GM_PII_IPV6, "fe80::2");
    EXPECT("gw [2001::] up", GM_PII_IPV6, "2001::");
    gm_pii_options o = {0, 1};
    gm_pii_finding *f;
    size_t n;
    const char *t = "127.0.0.1 10.1.2.3 192.168.0.1 172.20.0.1 ::1 fe80::1 fd00::1 192.0.2.1 2001:db8::1";
    CHECK_OK(gm_pii_scan(t, strlen(t), &o, &f, &n));
    CHECKF(n == 2, "skip_local_ip left %zu", n);
    if (n == 2) CHECK(f[0].type == GM_PII_IPV4 && f[1].type == GM_PII_IPV6);
    free(f);
}

static void test_email_phone(void) {
    EXPECT("mail john.doe+news@example.com.", GM_PII_EMAIL, "john.doe+news@example.com");
    EXPECT("<info@mail.example.co.uk>", GM_PII_EMAIL, "info@mail.example.co.uk");
    EXPECT("Écrivez à zoë.müller@bücher.example !", GM_PII_EMAIL, "zoë.müller@bücher.example");
    EXPECT("请发邮件至li@example.cn联系", GM_PII_EMAIL, "li@example.cn");
    EXPECT("puny user@xn--bcher-kva.example", GM_PII_EMAIL, "user@xn--bcher-kva.example");
    NONE("user@localhost and admin@server");
    NONE("icon@2x.png and lodash@4.17.21 and @handle");
    NONE("foo@bar..com a@b.c x@-y.com u@host_name.com");
    NONE("a..b@example.com");
    EXPECT("{\"text\": \"mail:\\nbob@example.org\\n\"}", GM_PII_EMAIL, "bob@example.org"); /* JSON-escaped */
    NONE("app = Flask(__name__)\\n@app.route('/')");
    EXPECT("\"line\\n020 7946 0958\"", GM_PII_PHONE, "020 7946 0958");
    NONE("name@example.zz"); /* not a country code */
    EXPECT("call (202) 555-0143 now", GM_PII_PHONE, "(202) 555-0143");
    EXPECT("call 202.555.0143.", GM_PII_PHONE, "202.555.0143");
    EXPECT("call 1-800-555-0199", GM_PII_PHONE, "1-800-555-0199");
    EXPECT("tel +44 (0)20 7946 0958.", GM_PII_PHONE, "+44 (0)20 7946 0958");
    EXPECT("tel +1 202 555 0143", GM_PII_PHONE, "+1 202 555 0143");
    EXPECT("tel +33 6 39 98 12 34", GM_PII_PHONE, "+33 6 39 98 12 34");
    EXPECT("tel 0044 20 7946 0958", GM_PII_PHONE, "0044 20 7946 0958");
    EXPECT("tel 020 7946 0958", GM_PII_PHONE, "020 7946 0958");
    EXPECT("tel 06 39 98 12 34", GM_PII_PHONE, "06 39 98 12 34");
    EXPECT("Tel. 030/12345678", GM_PII_PHONE, "030/12345678");
    EXPECT("tel (02) 5550 1234", GM_PII_PHONE, "(02) 5550 1234");
    EXPECT("电话：+86 138 0013 8000", GM_PII_PHONE, "+86 138 0013 8000");
    NONE("call 555-0143");           /* too short */
    NONE("call 0800 123");
    NONE("+1 555");
    NONE("+0 123 456 7890");         /* no country code 0 */
    NONE("+28 123 456 789");         /* 28 is unassigned */
    NONE("order 5551234567");        /* unformatted: not reported */
    NONE("on 05/12/2024 and 05.12.2024");
    NONE("042-17-0000 and 3 + 4");
}

static void test_credentials(void) {
    const char *pem = "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
                      "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
                      "-----END RSA PRIVATE KEY-----\nbye";
    const char *b = strstr(pem, "-----BEGIN"), *e = strstr(pem, "KEY-----\nbye");
    size_t n;
    gm_pii_finding *f = scan(pem, &n);
    CHECK(n == 1 && f[0].type == GM_PII_PRIVATE_KEY && f[0].start == (size_t)(b - pem) &&
          f[0].end == (size_t)(e - pem) + 8);
    free(f);
    /* without an END line: the base64 body */
    const char *cut = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n\n(truncated)";
    f = scan(cut, &n);
    CHECK(n == 1 && f[0].type == GM_PII_PRIVATE_KEY && f[0].start == 0 &&
          f[0].end == (size_t)(strstr(cut, "\n\n(") - cut));
    free(f);
    EXPECT("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
           "-----END OPENSSH PRIVATE KEY-----",
           GM_PII_PRIVATE_KEY, "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
           "-----END OPENSSH PRIVATE KEY-----");
    /* pasted on one line; PGP armor with header lines */
    EXPECT("k=-----BEGIN PRIVATE KEY----- MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7 -----END PRIVATE KEY-----;",
           GM_PII_PRIVATE_KEY,
           "-----BEGIN PRIVATE KEY----- MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7 -----END PRIVATE KEY-----");
    EXPECT("-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2 (GNU/Linux)\n\nlQOYBF0Zt2MBCADc4b7nqYxq0y6Gx3Pr2k\n"
           "8Jv9ZxwUo4yM0L7wQ8pT3z1b\n=Ab12\n-----END PGP PRIVATE KEY BLOCK-----\n",
           GM_PII_PRIVATE_KEY, "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2 (GNU/Linux)\n\nlQOYBF0Zt2MBCADc4b7nqYxq0y6Gx3Pr2k\n"
           "8Jv9ZxwUo4yM0L7wQ8pT3z1b\n=Ab12\n-----END PGP PRIVATE KEY BLOCK-----");
    /* inside a JSON string, with escaped newlines */
    EXPECT("{\"key\": \"-----BEGIN EC PRIVATE KEY-----\\nMHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY/PuoAoGCCqGSM49\\n"
           "-----END EC PRIVATE KEY-----\\n\"}", GM_PII_PRIVATE_KEY,
           "-----BEGIN EC PRIVATE KEY-----\\nMHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY/PuoAoGCCqGSM49\\n"
           "-----END EC PRIVATE KEY-----");
    /* a BEGIN line inside a body ends it: two headers without bodies are nothing */
    NONE("-----BEGIN EC PRIVATE KEY-----\n-----BEGIN EC PRIVATE KEY-----\nshort\n");
    NONE("-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----");
    NONE("-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0t\n"
         "-----END PUBLIC KEY-----");
    NONE("-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJRTES\n"
         "-----END CERTIFICATE-----");
    /* API keys by prefix, with a random-looking body */
    EXPECT("aws AKIAIOSFODNN7EXAMPLE", GM_PII_API_KEY, "AKIAIOSFODNN7EXAMPLE");
    EXPECT("token ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5.", GM_PII_API_KEY, "ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5");
    EXPECT("OPENAI_KEY=sk-proj-Xk29sLq81mZpV7cR4nT0wYb6HdJ3fG5a", GM_PII_API_KEY, "sk-proj-Xk29sLq81mZpV7cR4nT0wYb6HdJ3fG5a");
    EXPECT("slack xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", GM_PII_API_KEY,
           "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx");
    EXPECT("maps AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", GM_PII_API_KEY, "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY");
    EXPECT("maps AIzafX-JoGxe4PsxxC3Xjb50oTIZz2gP8zb_s9-.", GM_PII_API_KEY, "AIzafX-JoGxe4PsxxC3Xjb50oTIZz2gP8zb_s9-");
    EXPECT("key sk-proj-Xk29sLq81mZpV7cR4nT0wYb6HdJ3fG5a-.", GM_PII_API_KEY, "sk-proj-Xk29sLq81mZpV7cR4nT0wYb6HdJ3fG5a-");
    EXPECT("stripe sk_test_4eC39HqLyjWDarjtT1zdp7dc", GM_PII_API_KEY, "sk_test_4eC39HqLyjWDarjtT1zdp7dc");
    EXPECT("hf hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", GM_PII_API_KEY, "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789");
    EXPECT("gl glpat-x9Yz3Kq7Lm2Np5Rs8Tv1", GM_PII_API_KEY, "glpat-x9Yz3Kq7Lm2Np5Rs8Tv1");
    EXPECT("pat github_pat_11ABCDEFG0123456789abc_defGHIJKLmnopQRSTuvwxYZ0123456789abcdefGHIJKLMNOPqrstuvWXYZ01234 ok",
           GM_PII_API_KEY, "github_pat_11ABCDEFG0123456789abc_defGHIJKLmnopQRSTuvwxYZ0123456789abcdefGHIJKLMNOPqrstuvWXYZ01234");
    EXPECT("npm npm_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5", GM_PII_API_KEY, "npm_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5");
    EXPECT("pypi pypi-AgEIcHlwaS5vcmcCJDU3ZTQ4YjA4LTM5YjctNDY3Mi05ZDM2LTg0ZjZmMjRkZGQ2NQ", GM_PII_API_KEY,
           "pypi-AgEIcHlwaS5vcmcCJDU3ZTQ4YjA4LTM5YjctNDY3Mi05ZDM2LTg0ZjZmMjRkZGQ2NQ");
    EXPECT("sg 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 ok", GM_PII_API_KEY,
           "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");
    EXPECT("hook xoxp-1234567890-0987654321-AbCdEf123456", GM_PII_API_KEY, "xoxp-1234567890-0987654321-AbCdEf123456");
    EXPECT("live rk_live_51H8aBcDeFgHiJkLmNoPqRsT", GM_PII_API_KEY, "rk_live_51H8aBcDeFgHiJkLmNoPqRsT");
    NONE("AKIAXXXXXXXXXXXXXXXX");                         /* entropy */
    NONE("sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");           /* entropy, no digits */
    NONE("ghp_" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    NONE("sk-your-api-key-goes-here-please");             /* no digits */
    NONE("a risk-free task-management tool");
    NONE("AKIAIOSFODNN7EXAMPL");                          /* 15 characters */
    NONE("AKIAIOSFODNN7EXAMPLEX");                        /* 17 */
    /* NAME = value with a secret-like name */
    EXPECT("db_password = \"Zx8kQ2mP9vL4tR7w\"", GM_PII_API_KEY, "Zx8kQ2mP9vL4tR7w");
    EXPECT("{\"client_secret\": \"a1B2c3D4e5F6g7H8i9J0\"}", GM_PII_API_KEY, "a1B2c3D4e5F6g7H8i9J0");
    EXPECT("Authorization: Bearer mF_9.B5f-4.1JqM9xT2zQ7w", GM_PII_API_KEY, "mF_9.B5f-4.1JqM9xT2zQ7w");
    NONE("password: hunter2");
    NONE("api_key = os.environ['API_KEY']");
    NONE("monkey = \"abcdefghijklmnopqrstu\"");           /* no digits */
    NONE("sha256 = \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\""); /* not a secret name */
}

static void test_boundaries_utf8(void) {
    /* offsets are bytes: 'é' and '€' before the finding shift it */
    const char *t = "Café € 4111111111111111 ok";
    size_t n;
    gm_pii_finding *f = scan(t, &n);
    CHECK(n == 1 && f[0].start == 10 && f[0].end == 26);
    free(f);
    NONE("é4111111111111111");  /* a letter before: inside a word */
    NONE("4111111111111111ü");
    EXPECT("№4111111111111111", GM_PII_CARD, "4111111111111111");
    EXPECT("电话13800138000或(202) 555-0143", GM_PII_PHONE, "(202) 555-0143");
    /* invalid UTF-8 is scanned as bytes */
    const char bad[] = "\xff\xfe 192.0.2.1 \xc3";
    f = NULL;
    CHECK_OK(gm_pii_scan(bad, sizeof bad - 1, NULL, &f, &n));
    CHECK(n == 1 && f[0].type == GM_PII_IPV4 && f[0].start == 3);
    free(f);
    /* overlaps: the containing span wins */
    EXPECT("mail AB123456C@example.com", GM_PII_EMAIL, "AB123456C@example.com");
    EXPECT("fe80::192.0.2.1", GM_PII_IPV6, "fe80::192.0.2.1");
    /* empty and NULL-with-zero-length inputs */
    CHECK_OK(gm_pii_scan("", 0, NULL, &f, &n));
    CHECK(n == 0 && f == NULL);
    CHECK_OK(gm_pii_scan(NULL, 0, NULL, &f, &n));
    CHECK(n == 0);
}

static void test_redact_and_options(void) {
    const char *t = "Mail a.b@example.com, card 4111 1111 1111 1111, ip 192.0.2.1.";
    gm_pii_finding *f;
    size_t n;
    CHECK_OK(gm_pii_scan(t, strlen(t), NULL, &f, &n));
    CHECK(n == 3);
    char *r;
    size_t rl;
    CHECK_OK(gm_pii_redact(t, strlen(t), f, n, &r, &rl));
    CHECKF(!strcmp(r, "Mail [EMAIL], card [CARD], ip [IPV4]."), "%s", r);
    CHECK(rl == strlen(r));
    free(r);
    if (n >= 2) { /* out of order: refused */
        gm_pii_finding sw[2] = {f[1], f[0]};
        CHECK(gm_pii_redact(t, strlen(t), sw, 2, &r, &rl) == GM_ERR_ARG);
        gm_pii_finding past = f[0];
        past.end = strlen(t) + 1;
        CHECK(gm_pii_redact(t, strlen(t), &past, 1, &r, &rl) == GM_ERR_ARG);
    }
    free(f);
    CHECK_OK(gm_pii_redact("abc", 3, NULL, 0, &r, &rl));
    CHECK(!strcmp(r, "abc") && rl == 3);
    free(r);
    gm_pii_options o = {1u << GM_PII_CARD, 0};
    CHECK_OK(gm_pii_scan(t, strlen(t), &o, &f, &n));
    CHECK(n == 1 && f[0].type == GM_PII_CARD && f[0].severity == GM_PII_SENSITIVE && !strcmp(f[0].rule, "visa"));
    free(f);
    for (int k = 0; k < GM_PII_N_TYPES; k++) {
        CHECK(gm_pii_type_from_name(gm_pii_type_name((gm_pii_type)k)) == k);
        gm_pii_severity s = gm_pii_type_severity((gm_pii_type)k);
        int personal = k == GM_PII_EMAIL || k == GM_PII_PHONE || k == GM_PII_IPV4 || k == GM_PII_IPV6;
        CHECK(s == (personal ? GM_PII_PERSONAL : GM_PII_SENSITIVE));
    }
    CHECK(gm_pii_type_from_name("NAME") == -1 && gm_pii_type_name(GM_PII_N_TYPES) == NULL);
}

/* Random bytes and PII-ish fragments: findings sorted, in bounds, non-overlapping. */
static void test_random_invariants(void) {
    static const char *const FRAG[] = {"4111 1111 1111 1111", "@example.com", "+44 20 7946 0958", "::", "2001:db8::1",
                                       "-----BEGIN PRIVATE KEY-----\n", "sk-", "AKIA", "192.0.2.", "123-45-6789",
                                       "GB82 WEST ", "é", "\xff", " ", ".", "-", ":", "0", "7", "a", "Z", "=", "\n"};
    unsigned long long x = 88172645463325252ULL;
    char buf[600];
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = 0;
        while (len < 500) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            if (x % 3 == 0) buf[len++] = (char)(x >> 24);
            else {
                const char *fr = FRAG[(x >> 8) % (sizeof FRAG / sizeof FRAG[0])];
                size_t fl = strlen(fr);
                if (len + fl > sizeof buf) break;
                memcpy(buf + len, fr, fl);
                len += fl;
            }
        }
        gm_pii_finding *f;
        size_t n;
        if (gm_pii_scan(buf, len, NULL, &f, &n) != GM_OK) {
            CHECK(0);
            continue;
        }
        int ok = 1;
        for (size_t i = 0; i < n; i++) {
            ok &= f[i].start < f[i].end && f[i].end <= len && (i == 0 || f[i].start >= f[i - 1].end);
            ok &= (unsigned)f[i].type < GM_PII_N_TYPES && f[i].rule != NULL;
        }
        CHECKF(ok, "iteration %d", iter);
        free(f);
        if (!ok) break;
    }
}

/* ---- precision and recall on the labeled set ------------------------------------------------------ */

typedef struct {
    size_t tp, fp, fn;
} counts;

static void test_labeled_set(void) {
    const char *path = getenv("GM_PII_SET") ? getenv("GM_PII_SET") : "tests/data/pii/labeled.jsonl";
    char *data;
    size_t len;
    if (gm_file_read_all(path, &data, &len) != GM_OK) {
        CHECKF(0, "%s: %s (run from the source root; make it with tools/ref/make_pii_set.py)", path, gm_last_error());
        return;
    }
    counts c[GM_PII_N_TYPES];
    memset(c, 0, sizeof c);
    size_t n_texts = 0, n_bad = 0, shown = 0;
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && data[e] != '\n') e++;
        if (e == i) {
            i = e + 1;
            continue;
        }
        gm_json_doc *doc;
        if (gm_json_parse(data + i, e - i, path, &doc) != GM_OK) {
            CHECKF(0, "%s", gm_last_error());
            n_bad++;
            i = e + 1;
            continue;
        }
        i = e + 1;
        const gm_json *root = gm_json_root(doc), *text = gm_json_get(root, "text"), *spans = gm_json_get(root, "spans");
        const char *id = gm_json_get_str(root, "id");
        if (!text || text->type != GM_JSON_STRING || !spans || spans->type != GM_JSON_ARRAY) {
            CHECKF(0, "%s: record without text/spans", path);
            gm_json_free(doc);
            n_bad++;
            continue;
        }
        n_texts++;
        gm_pii_finding *f;
        size_t n;
        CHECK_OK(gm_pii_scan(text->str, text->len, NULL, &f, &n));
        char *used = calloc(n + 1, 1);
        for (size_t s = 0; s < spans->len; s++) {
            const gm_json *sp = &spans->items[s];
            const char *tn = gm_json_get_str(sp, "type");
            int64_t a = -1, b = -1;
            int t = gm_pii_type_from_name(tn);
            if (t < 0 || !gm_json_get_int(sp, "start", &a) || !gm_json_get_int(sp, "end", &b)) {
                CHECKF(0, "%s: bad span in %s", path, id ? id : "?");
                continue;
            }
            int hit = 0;
            for (size_t k = 0; k < n && !hit; k++)
                if (!used[k] && (int)f[k].type == t && f[k].start == (size_t)a && f[k].end == (size_t)b) used[k] = 1, hit = 1;
            if (hit) c[t].tp++;
            else {
                c[t].fn++;
                if (shown++ < 15)
                    fprintf(stderr, "  missed %s in %s: \"%.*s\"\n", tn, id ? id : "?", (int)(b - a), text->str + a);
            }
        }
        for (size_t k = 0; k < n; k++)
            if (!used[k]) {
                c[f[k].type].fp++;
                if (shown++ < 15)
                    fprintf(stderr, "  false %s (%s) in %s: \"%.*s\"\n", gm_pii_type_name(f[k].type), f[k].rule,
                            id ? id : "?", (int)(f[k].end - f[k].start), text->str + f[k].start);
            }
        free(used);
        free(f);
        gm_json_free(doc);
    }
    free(data);
    CHECKF(n_texts >= 1000 && n_bad == 0, "%zu texts, %zu bad records", n_texts, n_bad);
    printf("labeled set: %zu texts; exact span match (same type, byte start and end)\n", n_texts);
    printf("%-12s %6s %5s %5s %5s %9s %7s\n", "detector", "spans", "TP", "FP", "FN", "precision", "recall");
    for (int t = 0; t < GM_PII_N_TYPES; t++) {
        double p = c[t].tp + c[t].fp ? (double)c[t].tp / (double)(c[t].tp + c[t].fp) : 0;
        double r = c[t].tp + c[t].fn ? (double)c[t].tp / (double)(c[t].tp + c[t].fn) : 0;
        printf("%-12s %6zu %5zu %5zu %5zu %9.3f %7.3f\n", gm_pii_type_name((gm_pii_type)t), c[t].tp + c[t].fn,
               c[t].tp, c[t].fp, c[t].fn, p, r);
        CHECKF(c[t].tp + c[t].fn >= 50, "%s: only %zu labeled spans", gm_pii_type_name((gm_pii_type)t), c[t].tp + c[t].fn);
        CHECKF(p >= 0.95 && r >= 0.95, "%s: precision %.3f recall %.3f (need >= 0.95)", gm_pii_type_name((gm_pii_type)t), p, r);
    }
}

int main(void) {
    test_luhn();
    test_iban();
    test_cards();
    test_ssn_and_ids();
    test_ip();
    test_email_phone();
    test_credentials();
    test_boundaries_utf8();
    test_redact_and_options();
    test_random_invariants();
    test_labeled_set();
    TEST_DONE();
}
