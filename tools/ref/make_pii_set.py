#!/usr/bin/python3
"""Makes tests/data/pii/labeled.jsonl: a labeled synthetic set for the PII detectors (src/eval/pii.h).

    python3 tools/ref/make_pii_set.py [OUT] [--seed N]   # stdlib only, deterministic (seed 13616)

Other seeds draw fresh sets from the same distribution (a check that the detectors were not fitted to one
draw: GM_PII_SET=OUT build/test_pii scores any of them).

Each line: {"id": "...", "kind": "positive" | "negative" | "mixed", "text": "...",
            "spans": [{"type": "EMAIL", "start": 10, "end": 30, "rule": "..."}]}
Offsets are UTF-8 byte offsets, [start, end); types are the C enum's names (gm_pii_type_name).

Everything is fake: e-mail domains are the RFC 2606/6761 reserved ones (example.com, .example, .test),
phone numbers come from ranges reserved for fiction (NANP 555-01xx, Ofcom drama numbers, ACMA and ARCEP
fiction ranges) or are made up, IPs are the RFC 5737 / RFC 3849 documentation ranges (plus private ones),
cards are the processors' published test numbers or made-up numbers on test prefixes, IBANs are the ISO
13616 registry examples or made-up accounts with computed check digits, national IDs are random values that
pass the format rules, keys and tokens are random strings. Names are invented. Checksums here are written
independently of the C code, so the two cross-check each other.

Hard negatives (no span expected): numbers failing Luhn / mod-97 / Verhoeff / mod-23 / MOD 11-2, invalid SSN
areas, version strings, dates, times, ISBNs, UUIDs, hex hashes, prices, order and tracking numbers, short
phone-like numbers, code snippets, e-mail-like strings without a valid domain, placeholder keys, public
keys and certificates.
"""
import json
import os
import random
import sys

SEED = 13616
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "..", "tests", "data", "pii", "labeled.jsonl")

R = random.Random(SEED)

FIRST = ["Alex", "Bea", "Chidi", "Dana", "Emil", "Farah", "Goran", "Hana", "Ivo", "Jun", "Kaia", "Lior", "Mira",
         "Nadia", "Oskar", "Priya", "Quinn", "Rafa", "Sina", "Tomas", "Uma", "Vera", "Wim", "Xenia", "Yusuf", "Zoe",
         "José", "Zoë", "Søren", "Łukasz", "Aiko", "Björn"]
LAST = ["Abara", "Brill", "Castellan", "Dorn", "Eklund", "Fairweather", "Grishan", "Holt", "Ibarra", "Jansky",
        "Kowal", "Lindqvist", "Moravec", "Nakamura", "Okafor", "Penhale", "Quist", "Rask", "Sandoval", "Tamm",
        "Umbers", "Voss", "Whitlock", "Yarrow", "Zeller", "Müller", "Øst", "García"]
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
UPPER_DIGIT = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
B64 = ALNUM + "+/"


def rstr(alphabet, n):
    return "".join(R.choice(alphabet) for _ in range(n))


def rdig(n):
    return "".join(R.choice("0123456789") for _ in range(n))


# ---- checksums (independent of the C implementation) ------------------------------------------------

def luhn_ok(d):
    total = 0
    for i, ch in enumerate(reversed(d)):
        v = int(ch)
        if i % 2:
            v = v * 2 - 9 if v > 4 else v * 2
        total += v
    return total % 10 == 0


def luhn_complete(prefix_digits):
    for c in "0123456789":
        if luhn_ok(prefix_digits + c):
            return prefix_digits + c
    raise AssertionError


def iban_ok(s):
    s = s.replace(" ", "")
    r = s[4:] + s[:4]
    return int("".join(str(int(ch, 36)) for ch in r)) % 97 == 1


def iban_make(country, bban):
    n = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))
    return "%s%02d%s" % (country, 98 - n % 97, bban)


def verhoeff_ok(num):
    d = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
         [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
         [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
         [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]
    p = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
         [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
         [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8]]
    c = 0
    for i, ch in enumerate(reversed(num)):
        c = d[c][p[i % 8][int(ch)]]
    return c == 0


def verhoeff_complete(prefix):
    for ch in "0123456789":
        if verhoeff_ok(prefix + ch):
            return prefix + ch
    raise AssertionError


DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
HETU_CHARS = "0123456789ABCDEFHJKLMNPRSTUVWXY"
RIC_W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def ric_check(d17):
    return "10X98765432"[sum(w * int(c) for w, c in zip(RIC_W, d17)) % 11]


def days_in(y, m):
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


def rdate(y0, y1):
    y = R.randint(y0, y1)
    m = R.randint(1, 12)
    return y, m, R.randint(1, days_in(y, m))


# ---- positive generators: each returns (text, rule) -------------------------------------------------

def ascii_fold(s):
    table = {"é": "e", "ë": "e", "ø": "o", "Ø": "O", "Ł": "L", "ł": "l", "ü": "u", "ö": "o", "å": "a",
             "í": "i", "á": "a", "ñ": "n"}
    return "".join(table.get(c, c) for c in s)


def gen_email():
    f, l = R.choice(FIRST), R.choice(LAST)
    style = R.randrange(8)
    if style == 0:
        local = ascii_fold(f).lower() + "." + ascii_fold(l).lower()
    elif style == 1:
        local = ascii_fold(f)[0].lower() + ascii_fold(l).lower() + rdig(R.randint(1, 3))
    elif style == 2:
        local = ascii_fold(f).lower() + "_" + ascii_fold(l).lower()
    elif style == 3:
        local = ascii_fold(f).lower() + "+" + R.choice(["news", "billing", "test", "work"])
    elif style == 4:
        local = R.choice(["info", "support", "sales", "hr", "no-reply", "admin", "office"])
    elif style == 5:
        local = (f + "." + l).lower()  # may hold non-ASCII letters (RFC 6531)
    elif style == 6:
        local = ascii_fold(l).upper() + "." + ascii_fold(f).upper()
    else:
        local = ascii_fold(f).lower() + "-" + ascii_fold(l).lower() + "." + rdig(2)
    domain = R.choice(["example.com", "example.org", "example.net", "mail.example.com", "corp.example.net",
                       "uni.example.edu", "shop.example", "post.test", "example.co.uk", "bücher.example",
                       "xn--bcher-kva.example", "dept.research.example.org"])
    return local + "@" + domain, "email"


def npa():
    return "%d%d%d" % (R.randint(2, 9), R.choice([0, 1, 2, 3, 4, 5, 6, 7, 8]), R.randint(0, 9))


def gen_phone():
    k = R.randrange(16)
    line = "01%02d" % R.randrange(100)
    if k == 0:
        return "(%s) 555-%s" % (npa(), line), "phone_nanp"
    if k == 1:
        return "%s-555-%s" % (npa(), line), "phone_nanp"
    if k == 2:
        return "%s.555.%s" % (npa(), line), "phone_nanp"
    if k == 3:
        return "+1 %s 555 %s" % (npa(), line), "phone_intl"
    if k == 4:
        return "+1-%s-555-%s" % (npa(), line), "phone_intl"
    if k == 5:
        return "1-%s-555-%s" % (npa(), line), "phone_nanp"
    if k == 6:  # Ofcom drama ranges
        return R.choice(["020 7946 0%03d", "0161 496 0%03d", "0113 496 0%03d", "07700 900%03d"]) % R.randrange(
            1000), "phone_national"
    if k == 7:
        return R.choice(["+44 20 7946 0%03d", "+44 (0)20 7946 0%03d", "+44 7700 900%03d",
                         "0044 161 496 0%03d"]) % R.randrange(1000), "phone_intl"
    if k == 8:  # ACMA fiction ranges
        return R.choice(["0491 570 %03d" % R.choice([6, 156, 157, 158, 159, 110, 313, 737]),
                         "(02) 5550 %04d" % R.randrange(10000), "(03) 7010 %04d" % R.randrange(10000)]), "phone_national"
    if k == 9:
        return R.choice(["+61 491 570 %03d" % R.choice([156, 157, 158, 159]),
                         "+61 2 5550 %04d" % R.randrange(10000)]), "phone_intl"
    if k == 10:  # ARCEP fiction ranges
        return R.choice(["01 99 00 %02d %02d", "06 39 98 %02d %02d", "04 65 71 %02d %02d"]) % (
            R.randrange(100), R.randrange(100)), "phone_national"
    if k == 11:
        return R.choice(["+33 1 99 00 %02d %02d", "+33 6 39 98 %02d %02d", "+33.6.39.98.%02d.%02d"]) % (
            R.randrange(100), R.randrange(100)), "phone_intl"
    if k == 12:  # made up
        return R.choice(["+49 30 %s" % rdig(8), "+49 (0)30 %s %s" % (rdig(4), rdig(4)), "+49-89-%s" % rdig(7)]), "phone_intl"
    if k == 13:
        return R.choice(["030 %s" % rdig(8), "089/%s" % rdig(7), "030-%s-%s" % (rdig(4), rdig(4))]), "phone_national"
    if k == 14:
        return R.choice(["+81 3-%s-%s" % (rdig(4), rdig(4)), "+86 138 %s %s" % (rdig(4), rdig(4)),
                         "+55 11 9%s-%s" % (rdig(4), rdig(4)), "+91 98%s %s" % (rdig(3), rdig(5)),
                         "+34 6%s %s %s %s" % (rdig(2), rdig(2), rdig(2), rdig(2))]), "phone_intl"
    return R.choice(["+12025550%03d" % R.randrange(100, 200), "+4420794600%02d" % R.randrange(100)]), "phone_intl"


TEST_CARDS = [("4111111111111111", "visa"), ("4012888888881881", "visa"), ("4222222222222", "visa"),
              ("5555555555554444", "mastercard"), ("5105105105105100", "mastercard"),
              ("2223003122003222", "mastercard"), ("378282246310005", "amex"), ("371449635398431", "amex"),
              ("378734493671000", "amex"), ("6011111111111117", "discover"), ("6011000990139424", "discover"),
              ("3530111333300000", "jcb"), ("3566002020360505", "jcb"), ("30569309025904", "diners"),
              ("38520000023237", "diners"), ("6200000000000005", "unionpay"), ("4000056655665556", "visa"),
              ("5200828282828210", "mastercard")]
TEST_PREFIXES = [("411111", 16, "visa"), ("400000", 16, "visa"), ("555555", 16, "mastercard"),
                 ("510510", 16, "mastercard"), ("222300", 16, "mastercard"), ("378282", 15, "amex"),
                 ("371449", 15, "amex"), ("601111", 16, "discover"), ("353011", 16, "jcb"),
                 ("305693", 14, "diners"), ("620000", 16, "unionpay"), ("400000", 19, "visa")]


def card_number():
    if R.random() < 0.3:
        return R.choice(TEST_CARDS)
    pre, n, brand = R.choice(TEST_PREFIXES)
    return luhn_complete(pre + rdig(n - len(pre) - 1)), brand


def card_format(d):
    style = R.randrange(3)
    if style == 0:
        return d
    sep = " " if style == 1 else "-"
    if len(d) == 15:
        return sep.join([d[:4], d[4:10], d[10:]])
    if len(d) == 14 and R.random() < 0.5:
        return sep.join([d[:4], d[4:10], d[10:]])
    return sep.join(d[i:i + 4] for i in range(0, len(d), 4))


def gen_card():
    d, brand = card_number()
    return card_format(d), brand


IBAN_EXAMPLES = ["GB82WEST12345698765432", "DE89370400440532013000", "FR1420041010050500013M02606",
                 "NL91ABNA0417164300", "BE68539007547034", "CH9300762011623852957", "AT611904300234573201",
                 "ES9121000418450200051332", "IT60X0542811101000000123456", "NO9386011117947",
                 "DK5000400440116243", "FI2112345600000785", "SE4550000000058398257466", "PL61109010140000071219812874",
                 "PT50000201231234567890154", "IE29AIBK93115212345678", "LU280019400644750000", "GR1601101250000000012300695",
                 "MT84MALT011000012345MTLCAST001S", "SA0380000000608010167519", "BR1800360305000010009795493C1",
                 "KW81CBKU0000000000001234560101", "TR330006100519786457841326"]
IBAN_FORMS = [("GB", lambda: "WEST" + rdig(14)), ("DE", lambda: rdig(18)), ("FR", lambda: rdig(10) + rstr(UPPER_DIGIT, 11) + rdig(2)),
              ("NL", lambda: "ABNA" + rdig(10)), ("ES", lambda: rdig(20)), ("IT", lambda: "X" + rdig(10) + rdig(12)),
              ("BE", lambda: rdig(12)), ("CH", lambda: rdig(17)), ("AT", lambda: rdig(16)), ("NO", lambda: rdig(11)),
              ("PL", lambda: rdig(24)), ("SE", lambda: rdig(20)), ("IE", lambda: "AIBK" + rdig(14))]


def iban_print(s):
    return " ".join(s[i:i + 4] for i in range(0, len(s), 4))


def gen_iban():
    if R.random() < 0.35:
        s = R.choice(IBAN_EXAMPLES)
    else:
        cc, f = R.choice(IBAN_FORMS)
        s = iban_make(cc, f())
    assert iban_ok(s), s
    return (iban_print(s) if R.random() < 0.5 else s), "iban"


def ssn_valid_parts():
    while True:
        a, g, s = R.randint(1, 899), R.randint(1, 99), R.randint(1, 9999)
        if a != 666:
            return a, g, s


def gen_ssn():
    a, g, s = ssn_valid_parts()
    return ("%03d-%02d-%04d" if R.random() < 0.8 else "%03d %02d %04d") % (a, g, s), "us_ssn"


NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"


def gen_nino():
    while True:
        p = R.choice(NINO_FIRST) + R.choice(NINO_SECOND)
        if p not in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
            break
    d = rdig(6)
    suf = R.choice("ABCD")
    if R.random() < 0.5:
        return p + d + suf, "uk_nino"
    return "%s %s %s %s %s" % (p, d[:2], d[2:4], d[4:], suf), "uk_nino"


def gen_dni():
    if R.random() < 0.7:
        n = R.randrange(10 ** 7, 10 ** 8)
        return "%08d%s%s" % (n, R.choice(["", "-"]), DNI_LETTERS[n % 23]), "es_dni"
    x = R.randrange(3)
    n = R.randrange(10 ** 7)
    return "%s%07d%s" % ("XYZ"[x], n, DNI_LETTERS[int("%d%07d" % (x, n)) % 23]), "es_nie"


def gen_ric():
    # (regions 62 and 65 start like UnionPay / Discover cards: an 18-digit number there is ambiguous)
    region = R.choice(["11", "31", "44", "51", "33", "42", "21"])
    y, m, d = rdate(1950, 2015)
    d17 = region + rdig(4) + "%04d%02d%02d" % (y, m, d) + rdig(3)
    return d17 + ric_check(d17), "cn_ric"


def gen_hetu():
    y, m, d = rdate(1900, 2024)
    sign = R.choice("-YXWVU") if y < 2000 else R.choice("ABCDEF")
    ind = R.randint(2, 899)
    v = int("%02d%02d%02d%03d" % (d, m, y % 100, ind))
    return "%02d%02d%02d%s%03d%s" % (d, m, y % 100, sign, ind, HETU_CHARS[v % 31]), "fi_hetu"


def gen_aadhaar():
    n = verhoeff_complete(str(R.randint(2, 9)) + rdig(10))
    sep = R.choice([" ", " ", "-"])
    return sep.join([n[:4], n[4:8], n[8:]]), "in_aadhaar"


def gen_national_id():
    return R.choice([gen_ssn, gen_ssn, gen_nino, gen_dni, gen_ric, gen_hetu, gen_aadhaar])()


def gen_ipv4():
    k = R.randrange(5)
    if k == 0:
        return "192.0.2.%d" % R.randint(1, 254), "ipv4"
    if k == 1:
        return "198.51.100.%d" % R.randint(0, 255), "ipv4"
    if k == 2:
        return "203.0.113.%d" % R.randint(1, 254), "ipv4"
    if k == 3:
        return "10.%d.%d.%d" % (R.randrange(256), R.randrange(256), R.randint(1, 254)), "ipv4"
    return "192.168.%d.%d" % (R.randrange(256), R.randint(1, 254)), "ipv4"


def h4():
    return "%x" % R.randrange(1, 0x10000)


def gen_ipv6():
    k = R.randrange(8)
    if k == 0:
        return "2001:db8:%s:%s:%s:%s:%s:%s" % tuple(h4() for _ in range(6)), "ipv6"
    if k == 1:
        return "2001:db8::%s" % h4(), "ipv6"
    if k == 2:
        return "2001:db8:%s::%s:%s" % (h4(), h4(), h4()), "ipv6"
    if k == 3:
        return "::ffff:192.0.2.%d" % R.randint(1, 254), "ipv6"
    if k == 4:
        return "fe80::%s:%s%%%s" % (h4(), h4(), R.choice(["eth0", "en0", "wlan0", "3"])), "ipv6"
    if k == 5:
        return ("2001:DB8:%s::%s" % (h4(), h4())).upper().replace("X", "x"), "ipv6"
    if k == 6:
        return "2001:0db8:0000:0000:0000:ff00:0042:%04x" % R.randrange(0x10000), "ipv6"
    return R.choice(["::1", "2001:db8::", "2001:db8:0:0:1::1", "64:ff9b::192.0.2.%d" % R.randint(1, 254)]), "ipv6"


PEM_LABELS = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY",
              "ENCRYPTED PRIVATE KEY", "DSA PRIVATE KEY"]


def pem_body(nbytes):
    s = rstr(B64, (nbytes * 4 // 3) // 4 * 4)
    return "\n".join(s[i:i + 64] for i in range(0, len(s), 64))


def gen_private_key():
    if R.random() < 0.15:
        return ("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n" + pem_body(R.randint(200, 600)) +
                "\n=" + rstr(B64, 4) + "\n-----END PGP PRIVATE KEY BLOCK-----"), "pem"
    label = R.choice(PEM_LABELS)
    return ("-----BEGIN %s-----\n%s\n-----END %s-----" % (label, pem_body(R.randint(90, 900)), label)), "pem"


def gen_api_key():
    k = R.randrange(12)
    if k == 0:
        return R.choice(["AKIA", "ASIA"]) + rstr(UPPER_DIGIT, 16), "aws_access_key"
    if k == 1:
        return "AIza" + rstr(ALNUM + "_-", 35), "google_api_key"
    if k == 2:
        return R.choice(["ghp_", "gho_", "ghs_"]) + rstr(ALNUM, 36), "github_token"
    if k == 3:
        return "github_pat_" + rstr(ALNUM, 22) + "_" + rstr(ALNUM, 59), "github_token"
    if k == 4:
        return "glpat-" + rstr(ALNUM + "_-", 20), "gitlab_token"
    if k == 5:
        return "xoxb-%s-%s-%s" % (rdig(12), rdig(13), rstr(ALNUM, 24)), "slack_token"
    if k == 6:
        return R.choice(["sk-" + rstr(ALNUM, 48), "sk-proj-" + rstr(ALNUM + "_-", 64),
                         "sk-ant-api03-" + rstr(ALNUM + "_-", 80)]), "openai_key"
    if k == 7:
        return R.choice(["sk_test_", "rk_test_"]) + rstr(ALNUM, 24), "stripe_key"
    if k == 8:
        return "hf_" + rstr(ALNUM, 34), "huggingface_token"
    if k == 9:
        return "npm_" + rstr(ALNUM, 36), "npm_token"
    return None, "assigned_secret"  # handled by the caller (needs a NAME = prefix)


def ensure_mixed(f):
    """Redraw until the random body holds both letters and digits (real keys nearly always do; the
    detectors require it, which the docs state)."""
    while True:
        v, rule = f()
        if v is None:
            return v, rule
        body = v.split("_", 1)[-1] if rule != "aws_access_key" else v[4:]
        if rule == "aws_access_key" or (any(c.isdigit() for c in body) and any(c.isalpha() for c in body)):
            return v, rule


GEN = {
    "EMAIL": gen_email, "PHONE": gen_phone, "CARD": gen_card, "IBAN": gen_iban, "NATIONAL_ID": gen_national_id,
    "IPV4": gen_ipv4, "IPV6": gen_ipv6, "PRIVATE_KEY": gen_private_key, "API_KEY": lambda: ensure_mixed(gen_api_key),
}

# ---- prose ----------------------------------------------------------------------------------------

FRAMES = {
    "EMAIL": ["Please write to {} if the parcel has not arrived.", "{n} can be reached at {} during office hours.",
              "Contact: {}", "CC {} on the next thread, please.", "Forwarded from <{}> on Tuesday.",
              "mailto:{}", "Bitte schreiben Sie an {}.", "Écrivez-nous à {} pour toute question.",
              "请发邮件至{}联系我们。", "Напишите на {}, пожалуйста.", "Reply-To: \"{n}\" <{}>",
              "{\"note\": \"mail\\n{}\\nthanks\"}"],
    "PHONE": ["Call {n} on {} after six.", "Tel: {}", "You can phone the front desk at {}.",
              "Her mobile is {}, but she rarely answers.", "Fax ({}) is no longer monitored.",
              "Rufen Sie uns unter {} an.", "Appelez le {} du lundi au vendredi.", "电话：{}",
              "Emergency contact: {n}, {}.", "{\"body\": \"Tel:\\n{}\\n\"}"],
    "CARD": ["Charge it to the card ending in the number {} please.", "card_number: {}",
             "The payment with {} was declined twice.", "Use test card {} with any future expiry date.",
             "Kartennummer {} wurde gesperrt.", "CC#: {} exp 12/29"],
    "IBAN": ["Transfer the deposit to IBAN {} by Friday.", "Bank details: {n}, IBAN: {}",
             "IBAN {} (BIC DEUTDEFF)", "Überweisung an {} erhalten.", "Le virement vers {} a été effectué."],
    "NATIONAL_ID": ["{n}'s identification number is {} according to the form.", "ID: {}",
                    "The applicant listed {} as their national ID.", "Número de identificación: {}",
                    "Henkilötunnus {} on virheellinen lomakkeessa.", "身份证号码{}已登记。",
                    "SSN/NINO on file: {}"],
    "IPV4": ["The request came from {} at 03:14 UTC.", "ssh admin@{} -p 2222", "Blocked host {} after five failures.",
             "Set the gateway to {}/24 and reboot.", "curl http://{}:8080/health", "Client IP={}"],
    "IPV6": ["The request came from [{}]:443 yesterday.", "Bind the service to {} only.",
             "ping6 {}", "Resolved AAAA record: {}", "Neighbour {} is unreachable."],
    "PRIVATE_KEY": ["Here is the deploy key, do not share it:\n{}\nRotate it after the demo.",
                    "{}", "id_rsa contents:\n{}\n", "Paste this into the vault:\n\n{}\n\nThanks!"],
    "API_KEY": ["export TOKEN={}", "The leaked key {} was revoked this morning.", "client = Client(api_key=\"{}\")",
                "Authorization: token {}", "Use {} for the staging environment.", "key: {}"],
}
SECRET_FRAMES = ["api_key = \"{}\"", "SECRET_ACCESS_KEY={}", "\"client_secret\": \"{}\"", "password: {}",
                 "db_password='{}'", "AUTH_TOKEN: {}", "Authorization: Bearer {}", "stripe.api_key = '{}'",
                 "https://api.example.com/v1/items?api_key={}&page=2"]

FILLER = ["The meeting moved to the small room on the third floor.", "We shipped the fix in the last release.",
          "Nobody remembered to water the plants.", "The report is due at the end of the quarter.",
          "It rained all weekend, so the hike was cancelled.", "Thanks again for your patience.",
          "The new intern starts on Monday.", "Lunch is on the terrace today.", "Die Sitzung beginnt um zehn Uhr.",
          "Le train a eu vingt minutes de retard.", "会议改到下午三点。", "Встреча перенесена на четверг.",
          "The build is green again 🎉.", "Sales grew by 12% year over year.", "Chapter 7 covers the proofs."]

# ---- hard negatives ------------------------------------------------------------------------------


def neg_card():
    d, _ = card_number()
    bad = d[:-1] + str((int(d[-1]) + R.randint(1, 9)) % 10)
    assert not luhn_ok(bad)
    return card_format(bad)


def neg_iban():
    s, _ = gen_iban()
    c = s.replace(" ", "")
    ck = int(c[2:4])
    bad = c[:2] + "%02d" % R.choice([k for k in range(2, 99) if k != ck]) + c[4:]
    assert not iban_ok(bad), bad
    return iban_print(bad) if " " in s else bad


def neg_ssn():
    return R.choice(["000-%02d-%04d" % (R.randint(1, 99), R.randint(1, 9999)),
                     "666-%02d-%04d" % (R.randint(1, 99), R.randint(1, 9999)),
                     "9%02d-%02d-%04d" % (R.randrange(100), R.randint(1, 99), R.randint(1, 9999)),
                     "%03d-00-%04d" % (R.randint(1, 665), R.randint(1, 9999)),
                     "%03d-%02d-0000" % (R.randint(1, 665), R.randint(1, 99)), "078-05-1120"])


def neg_id_checksum():
    k = R.randrange(4)
    if k == 0:
        n = R.randrange(10 ** 7, 10 ** 8)
        return "%08d%s" % (n, DNI_LETTERS[(n + R.randint(1, 22)) % 23])
    if k == 1:
        s, _ = gen_ric()
        wrong = R.choice([c for c in "0123456789X" if c != s[-1]])
        return s[:-1] + wrong
    if k == 2:
        s, _ = gen_hetu()
        wrong = R.choice([c for c in HETU_CHARS if c != s[-1]])
        return s[:-1] + wrong
    while True:
        n = str(R.randint(2, 9)) + rdig(11)
        if not verhoeff_ok(n):
            return " ".join([n[:4], n[4:8], n[8:]])


def uuid():
    h = "".join(R.choice("0123456789abcdef") for _ in range(32))
    return "%s-%s-4%s-%s%s-%s" % (h[:8], h[8:12], h[13:16], R.choice("89ab"), h[17:20], h[20:32])


def neg_misc():
    k = R.randrange(43)
    hx = lambda n: "".join(R.choice("0123456789abcdef") for _ in range(n))
    return [
        lambda: "Upgrade to version %d.%d.%d.%d.%d before the freeze." % tuple(R.randrange(20) for _ in range(5)),
        lambda: "Running v%d.%d.%d.%d in production." % tuple(R.randrange(20) for _ in range(4)),
        lambda: "Windows build 10.0.%d.%d is affected." % (R.randint(19000, 22631), R.randint(1000, 4000)),
        lambda: "The invoice is dated %04d-%02d-%02d." % rdate(1990, 2030),
        lambda: "Deadline: %02d/%02d/%04d at 17:00." % (R.randint(1, 28), R.randint(1, 12), R.randint(1990, 2030)),
        lambda: "Geboren am %02d.%02d.%04d in Graz." % (R.randint(1, 28), R.randint(1, 12), R.randint(1930, 2020)),
        lambda: "Logged at %04d/%02d/%02d %02d:%02d:%02d." % (rdate(2000, 2030) + (R.randrange(24), R.randrange(60), R.randrange(60))),
        lambda: "ISBN 978-%d-%02d-%06d-%d is out of print." % (R.randint(0, 9), R.randrange(100), R.randrange(10 ** 6), R.randrange(10)),
        lambda: "See ISBN 0-306-40615-2 and ISBN 978 0 306 40615 7.",
        lambda: "Request id %s failed." % uuid(),
        lambda: "Commit %s fixed it (parent %s)." % (hx(40), hx(7)),
        lambda: "sha256: %s" % hx(64),
        lambda: "The laptop costs $%d,%03d.%02d after tax." % (R.randint(1, 9), R.randrange(1000), R.randrange(100)),
        lambda: "Prix : %d %03d,%02d EUR" % (R.randint(1, 99), R.randrange(1000), R.randrange(100)),
        lambda: "Order #%d shipped; tracking 1Z%s." % (R.randint(10 ** 7, 10 ** 9), rstr(UPPER_DIGIT, 16)),
        lambda: "Invoice %d-%06d and ORD-%d-%d are paid." % (R.randint(2000, 2030), R.randrange(10 ** 6), R.randint(2000, 2030), R.randint(10 ** 5, 10 ** 6)),
        lambda: "Dial extension %d or 555-01%02d from a desk phone." % (R.randint(100, 9999), R.randrange(100)),
        lambda: "The code is %d %d." % (R.randint(100, 999), R.randint(1000, 9999)),
        lambda: "Call 0800 %03d for help." % R.randrange(1000),
        lambda: "for (int i = 0; i < %d; i++) { a[i] = b[i] * 2; }" % R.randint(2, 99),
        lambda: "std::vector<int> v; v.push_back(%d); auto x = ns::f(v);" % R.randrange(100),
        lambda: "x = arr[1:%d:2]; y = W @ x; print(f'{y:.3f}')" % R.randint(3, 9),
        lambda: "The meeting runs from 10:30:00 to 12:45:00.",
        lambda: "MAC address 00:1A:2B:%02X:%02X:%02X is on the allow list." % (R.randrange(256), R.randrange(256), R.randrange(256)),
        lambda: "Write to user@localhost or admin@server for local mail.",
        lambda: "The handle @%s%d posted again." % (R.choice(LAST).lower(), R.randrange(100)),
        lambda: "Use icon@2x.png for retina and npm i lodash@%d.%d.%d." % (R.randint(1, 5), R.randrange(20), R.randrange(20)),
        lambda: "Bad addresses: name@domain, foo@bar..com, user@-example.com, a@b.c, me@host_name.com.",
        lambda: "The score was %d.%d.%d.%d.%d across five rounds." % tuple(R.randrange(256) for _ in range(5)),
        lambda: "Address 256.%d.%d.%d is not valid and neither is 192.168.%d." % (R.randrange(256), R.randrange(256), R.randrange(256), R.randrange(256)),
        lambda: "Keys look like AKIAXXXXXXXXXXXXXXXX or sk-xxxxxxxxxxxxxxxxxxxxxxxx in the docs.",
        lambda: "Set GITHUB_TOKEN=ghp_" + "x" * 36 + " in your shell.",
        lambda: "-----BEGIN PUBLIC KEY-----\n%s\n-----END PUBLIC KEY-----" % pem_body(200),
        lambda: "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----" % pem_body(400),
        lambda: "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----",
        lambda: "It is a risk-free, task-management tool with a low-risk-profile.",
        lambda: "password: %s" % R.choice(["changeme", "hunter2", "<your password>", "********"]),
        lambda: "api_key = os.environ['API_KEY']",
        lambda: "Population: %d %03d %03d people." % (R.randint(1, 9), R.randrange(1000), R.randrange(1000)),
        lambda: "Part no. %s-%d, lot %d." % (rstr("ABCDEFGHJKLMNPRSTUVWXYZ", 3), R.randint(1000, 99999), R.randint(100000, 999999)),
        lambda: "evens, odds = l[::%d], l[1::%d]; rev = s[::-1]" % (R.randint(2, 9), R.randint(2, 9)),
        lambda: "app = Flask(__name__)\\n@app.route('/%s')" % R.choice(["", "api", "health"]),
        lambda: "Input shape (%d, %d, %d), %d:%02d elapsed." % (R.randint(1, 8), R.choice([224, 256, 512]), R.choice([224, 256]), R.randint(0, 59), R.randint(0, 59)),
    ][k]()


NEG_WRAP = ["The form rejected {} as invalid.", "Reference number {} (not an account).", "Test value: {}",
            "{} was typed by mistake.", "Lot {} is back in stock."]


def neg_checked():
    f = R.choice([neg_card, neg_card, neg_iban, neg_iban, neg_ssn, neg_id_checksum, neg_id_checksum])
    return R.choice(NEG_WRAP).format(f())


# ---- assembling -------------------------------------------------------------------------------------

def name():
    return R.choice(FIRST) + " " + R.choice(LAST)


class Text:
    def __init__(self):
        self.parts = []  # (str, type or None, rule)

    def add(self, s, typ=None, rule=None):
        self.parts.append((s, typ, rule))

    def frame(self, frame, value, typ, rule):
        frame = frame.replace("{n}", name())
        pre, post = frame.split("{}", 1)
        self.add(pre)
        self.add(value, typ, rule)
        self.add(post)

    def build(self):
        text, spans, off = "", [], 0
        for s, typ, rule in self.parts:
            b = len(s.encode("utf-8"))
            if typ:
                spans.append({"type": typ, "start": off, "end": off + b, "rule": rule})
            text += s
            off += b
        return text, spans


def positive(typ):
    t = Text()
    if R.random() < 0.5:
        t.add(R.choice(FILLER) + " ")
    if typ == "API_KEY":
        v, rule = GEN[typ]()
        if v is None:
            while True:
                v = rstr(ALNUM, R.randint(20, 40))
                if any(c.isdigit() for c in v) and any(c.isalpha() for c in v):
                    break
            t.frame(R.choice(SECRET_FRAMES), v, typ, rule)
        else:
            t.frame(R.choice(FRAMES[typ]), v, typ, rule)
    elif typ == "PRIVATE_KEY" and R.random() < 0.2:  # inside a JSON string: newlines escaped
        v, rule = GEN[typ]()
        t.frame(R.choice(["{\"deploy_key\": \"{}\"}", "config = {\"pem\": \"{}\\n\"}"]), v.replace("\n", "\\n"), typ, rule)
    else:
        v, rule = GEN[typ]()
        t.frame(R.choice(FRAMES[typ]), v, typ, rule)
    if R.random() < 0.5:
        t.add(" " + R.choice(FILLER))
    return t


def main():
    args = sys.argv[1:]
    if "--seed" in args:
        k = args.index("--seed")
        R.seed(int(args[k + 1]))
        del args[k:k + 2]
    out = args[0] if args else DEFAULT_OUT
    types = list(GEN)
    records = []
    # One PII item per text, 70 per type, then texts mixing two or three items with hard negatives.
    for typ in types:
        for _ in range(70):
            records.append(("positive", positive(typ)))
    for _ in range(260):
        t = Text()
        for j in range(R.randint(2, 3)):
            sub = positive(R.choice(types))
            if j:
                t.add(R.choice([" ", "\n", " — ", "; "]))
            t.parts.extend(sub.parts)
            if R.random() < 0.5:
                t.add("\n" + (neg_checked() if R.random() < 0.5 else neg_misc()))
        records.append(("mixed", t))
    for _ in range(420):
        t = Text()
        if R.random() < 0.4:
            t.add(R.choice(FILLER) + " ")
        t.add(neg_checked() if R.random() < 0.45 else neg_misc())
        if R.random() < 0.3:
            t.add(" " + R.choice(FILLER))
        records.append(("negative", t))
    R.shuffle(records)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    counts = {k: 0 for k in types}
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for i, (kind, t) in enumerate(records):
            text, spans = t.build()
            for s in spans:
                counts[s["type"]] += 1
            f.write(json.dumps({"id": "pii-%04d" % i, "kind": kind, "text": text, "spans": spans},
                               ensure_ascii=False) + "\n")
    print("%s: %d texts; spans per type: %s" % (out, len(records), ", ".join("%s %d" % kv for kv in counts.items())))


if __name__ == "__main__":
    main()
