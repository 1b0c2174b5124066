#!/usr/bin/env python3
"""Write tests/data/tok_strings.jsonl: tokenizer test strings, one JSON object
per line {"cat": CATEGORY, "text": STRING}. Stdlib only, deterministic (fixed
seed, no dependence on hash order or locale). All strings are valid UTF-8 with
no lone surrogates and no U+0000 (so a C harness may use NUL-terminated text).

Usage: make_tok_strings.py [OUT_JSONL]   (default tests/data/tok_strings.jsonl)
"""
import json
import os
import random
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                   "tests", "data", "tok_strings.jsonl")

rows = []


def add(cat, *texts):
    for t in texts:
        rows.append((cat, t))


# --- empty / single characters ---------------------------------------------
add("empty", "")
add("space", " ", "  ", "   ", "\u2581", "\u2581\u2581", " \u2581", "\u2581 ", "a\u2581b", "\u2581abc")

# --- English ----------------------------------------------------------------
add("english",
    "Hello",
    "Hello world",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "This is a test",
    "I can't believe it's not butter; she'd've known.",
    "First Citizen:\nBefore we proceed any further, hear me speak.",
    "To be, or not to be, that is the question:",
    "Whether 'tis nobler in the mind to suffer",
    "ALL CAPS SENTENCE WITH SHOUTING!!!",
    "mIxEd CaSe wOrDs ArE hArD",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "e.g. i.e. etc. Mr. Mrs. Dr. St. vs.",
    "Questions? Answers! Exclamations!? Interrobangs\u203d",
    "\"Double quotes\" and 'single quotes' and `backticks`",
    "\u201cCurly quotes\u201d and \u2018apostrophes\u2019 \u2014 and dashes \u2013 too\u2026",
    "hyphenated-words, under_scores, camelCase, PascalCase, kebab-case",
    "BERT is designed to pre-train deep bidirectional representations from unlabeled text by "
    "jointly conditioning on both left and right context in all layers.",
    "Transformers (formerly known as pytorch-transformers and pytorch-pretrained-bert) provides "
    "general-purpose architectures (BERT, GPT-2, RoBERTa, XLM, DistilBert, XLNet...) for Natural "
    "Language Understanding (NLU) and Natural Language Generation (NLG) with over 32+ pretrained "
    "models in 100+ languages and deep interoperability between Jax, PyTorch and TensorFlow.",
    "a", "I", "an", "in", "the", "inform", "training", "retrain", "pre-train",
    "The end.",
    "Once upon a time, in a land far, far away, there lived a king.",
    "Gemma is a family of lightweight, state-of-the-art open models.",
    "Punctuation...... lots,,,, of;;;; it::::",
    "(parentheses) [brackets] {braces} <angles>",
    "Tom & Jerry @ home # 1 $ 5 % off ^ * ~ | \\ / ?",
    "Q: What is 2+2?\nA: 4.",
    "Dear Sir or Madam,\n\nI am writing to complain.\n\nYours faithfully,\nA. Customer",
    "lowercase only words strung together without punctuation at all",
    "word " * 50,
    )

# --- leading / trailing / runs of spaces -------------------------------------
add("spaces_lead_trail",
    " Hello", "  Hello", "   Hello", "Hello ", "Hello  ", " Hello ", "  Hello  ",
    " Hello world ", "\u2581Hello", " \u2581Hello", "Hello world   ", "   leading three",
    " a", "a ", " a ", "  .", ". ")
for n in list(range(1, 41)):
    add("space_runs", "x" + " " * n + "y")
for n in (4, 8, 16, 31, 32, 33, 40):
    add("space_runs", " " * n)
for n in (2, 5, 30, 31, 32, 39):
    add("space_runs", "Hi" + " " * n + "Hello " + " " * (n // 2) + "end")

# --- tabs, newlines, CR LF, mixed whitespace ---------------------------------
add("tabs",
    "\t", "\t\t", "\t\t\t", "\t\t\t\t", "a\tb", "a\t\tb", "\tindented", "\t\tdouble indented",
    "col1\tcol2\tcol3\n1\t2\t3", "trailing tab\t", "\t\t\t\t \n\n61",
    "\t" * 31, "\t" * 32, "\t" * 33, "\t" * 40, "x" + "\t" * 37 + "y")
add("newlines",
    "\n", "\n\n", "\n\n\n", "a\nb", "a\n\nb", "a\n\n\n\nb", "line1\nline2\nline3\n",
    "\nleading newline", "trailing newline\n", "\n" * 31, "\n" * 32, "\n" * 40,
    "x" + "\n" * 35 + "y", "One\nTwo\nThree\nFour\nFive\nSix\nSeven\nEight\nNine\nTen")
add("crlf",
    "\r\n", "\r", "a\r\nb", "line1\r\nline2\r\n", "\r\n\r\n", "a\rb\rc", "mixed\r\nunix\nmac\rend",
    "Windows text\r\n\r\nParagraph two.\r\n")
add("mixed_ws",
    " \n", "\n ", " \n ", " \t\n", "\t \t", " \t \t ", "\n\t\n\t", "a \t b \n c",
    ". \t\t \n\nyou  \u00e9  @#\U0001F608  \U0001F917!       , 1234 15 5,61",
    "\u00a0non-breaking\u00a0space", "em\u2003space and\u2009thin space", "ideographic\u3000space",
    "line\u2028separator\u2029paragraph", "zero\u200bwidth\u200cnon\u200djoiner", "\ufeffBOM at start",
    "\v vertical tab \f form feed", "  \n  \n  ", "\t\n \t\n  \t\n",
    "    def f():\n        return 1\n", "x \n\n\n  y", " " * 3 + "\n" * 3 + "\t" * 3)

# --- numbers -------------------------------------------------------------------
add("numbers",
    "0", "7", "42", "1234", "12345678901234567890", "3.14159265358979323846",
    "-273.15", "+1 (555) 123-4567", "1,234,567.89", "1.234.567,89", "1e10", "6.022e23",
    "0xDEADBEEF", "0b101010", "100%", "$19.99", "\u20ac1.299,00", "\u00a5100", "\u00a3 5", "\u20b9 12,345.67",
    "2024-01-15", "15/01/2024", "01.15.2024", "12:34:56", "2024-01-15T12:34:56.789Z",
    "v1.2.3", "IPv4 192.168.0.1", "1st 2nd 3rd 4th", "3/4 cup", "\u00bd \u2153 \u00bc",
    "\u0661\u0662\u0663 \u0967\u0968\u0969 \uff11\uff12\uff13", "9" * 100,
    "Order #4411, qty 12, total 1234.50", "pi = 3.14; e = 2.718", "x1 y2 z3 a10b20")

# --- code -----------------------------------------------------------------------
add("code",
    "#include <stdio.h>\n\nint main(void) {\n    printf(\"Hello, world!\\n\");\n    return 0;\n}\n",
    "for (int i = 0; i < n; i++) {\n\tsum += a[i] * b[i];\n}",
    "static inline float silu(float x) { return x / (1.0f + expf(-x)); }",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "class Foo:\n    def __init__(self, x):\n        self.x = x\n\n    def __repr__(self):\n"
    "        return f\"Foo({self.x!r})\"\n",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\nprint(x.shape)",
    "{\"name\": \"gemma\", \"vocab_size\": 256000, \"layers\": [1, 2, 3], \"ok\": true, \"x\": null}",
    "{\n  \"key\": \"value\",\n  \"nested\": {\n    \"a\": [1, 2.5, -3e-4]\n  }\n}",
    "<!DOCTYPE html>\n<html>\n<head><title>Test</title></head>\n<body><p class=\"x\">Hi</p></body>\n</html>",
    "<div id=\"main\"><span>text</span><br/><img src=\"a.png\" alt=\"\"></div>",
    "<table><tr><td>1</td><td>2</td></tr></table>",
    "<b>bold</b> <i>italic</i> <u>under</u> <s>strike</s> <code>x = 1</code>",
    "<h1>Title</h1>\n<blockquote>quote</blockquote>\n<strong>s</strong><em>e</em><sub>1</sub><sup>2</sup>",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "$ ls -la | grep '^d' && echo \"done\" > /dev/null 2>&1",
    "fn main() {\n    let v: Vec<i32> = (0..10).map(|x| x * x).collect();\n}",
    "const f = async (a, b) => { await g(a ?? b); return `${a}-${b}`; };",
    "if x != nil {\n\treturn fmt.Errorf(\"bad: %w\", err)\n}",
    "// comment\n/* block\n   comment */\n#define MAX(a,b) ((a)>(b)?(a):(b))",
    "a+=1;b-=2;c*=3;d/=4;e%=5;f<<=1;g>>=2;h&=i;j|=k;l^=m;",
    "\\begin{equation} E = mc^2 \\end{equation}",
    "x = [i**2 for i in range(10) if i % 2 == 0]",
    "    \n    \n        nested_indent = True\n",
    "@@ -1,3 +1,4 @@\n-old line\n+new line\n context",
    "key1=value1&key2=value%20two&arr[]=1&arr[]=2")

# --- URLs / e-mail --------------------------------------------------------------
add("url_email",
    "https://www.example.com", "http://example.com/path/to/page.html?query=1&b=two#frag",
    "https://github.com/google/gemma.cpp/blob/main/gemma/tokenizer.cc#L42",
    "ftp://user:pass@ftp.example.org:2121/file.tar.gz", "www.google.com/search?q=gemma+tokenizer",
    "https://\u4f8b\u5b50.\u6d4b\u8bd5/\u8def\u5f84?q=\u503c", "http://localhost:8080/api/v1/items/123",
    "mailto:someone@example.com", "john.doe+tag@sub.example.co.uk", "user@\u4f8b\u3048.jp",
    "Contact us at support@example.com or sales@example.org.", "file:///home/user/doc.txt",
    "data:text/plain;base64,SGVsbG8sIFdvcmxkIQ==", "https://en.wikipedia.org/wiki/Byte_pair_encoding")

# --- CJK ---------------------------------------------------------------------------
add("chinese",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01", "\u751f\u6d3b\u7684\u771f\u8c1b\u662f",
    "\u6211\u7231\u5317\u4eac\u5929\u5b89\u95e8\u3002", "\u4e2d\u6587\u6d4b\u8bd5 \u4e2d\u6587 \u6d4b\u8bd5",
    "\u6df7\u5408 mixed \u6587\u672c text", "\u7e41\u9ad4\u4e2d\u6587\u8207\u7b80\u4f53\u4e2d\u6587",
    "\u4eba\u5de5\u667a\u80fd\u6b63\u5728\u6539\u53d8\u4e16\u754c\u3002\u673a\u5668\u5b66\u4e60\u662f\u5176\u6838\u5fc3\u6280\u672f\u4e4b\u4e00\u3002",
    "\u300a\u7ea2\u697c\u68a6\u300b\u662f\u4e2d\u56fd\u53e4\u5178\u5c0f\u8bf4\u3002", "\u5b57" * 50)
add("japanese",
    "\u3053\u3093\u306b\u3061\u306f\u4e16\u754c", "\u30ab\u30bf\u30ab\u30ca\u3068\u3072\u3089\u304c\u306a\u3068\u6f22\u5b57",
    "\u6771\u4eac\u306f\u65e5\u672c\u306e\u9996\u90fd\u3067\u3059\u3002", "\uff8a\uff9d\uff76\uff78\uff76\uff80\uff76\uff85 \uff21\uff22\uff23",
    "\u543e\u8f29\u306f\u732b\u3067\u3042\u308b\u3002\u540d\u524d\u306f\u307e\u3060\u7121\u3044\u3002",
    "\u30b3\u30f3\u30d4\u30e5\u30fc\u30bf\u30fc\u30fb\u30b5\u30a4\u30a8\u30f3\u30b9")
add("korean",
    "\uc548\ub155\ud558\uc138\uc694", "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8 \ucc98\ub9ac",
    "\ub300\ud55c\ubbfc\uad6d\uc758 \uc218\ub3c4\ub294 \uc11c\uc6b8\uc785\ub2c8\ub2e4.",
    "\u1100\u1161\u11a8 decomposed jamo", "\u314b\u314b\u314b \u3160\u3160")

# --- RTL, Indic, Thai, Cyrillic, Greek, other scripts ------------------------------
add("arabic",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u0627\u0644\u0644\u063a\u0629 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u062c\u0645\u064a\u0644\u0629.",
    "\u0628\u0650\u0633\u0652\u0645\u0650 \u0671\u0644\u0644\u064e\u0651\u0670\u0647\u0650",
    "\u062e\u0635\u0645 \u0645\u0631\u062a\u064a\u0646 123 \u0648 English", "\u0641\u0627\u0631\u0633\u06cc: \u0633\u0644\u0627\u0645 \u062f\u0646\u06cc\u0627")
add("hebrew",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd", "\u05e2\u05d1\u05e8\u05d9\u05ea \u05d4\u05d9\u05d0 \u05e9\u05e4\u05d4 \u05e9\u05de\u05d9\u05ea.",
    "\u05e9\u05c2 \u05db\u05bc \ufb2b \ufb3b", "\u05d1\u05bc\u05b0\u05e8\u05b5\u05d0\u05e9\u05b4\u05c1\u05d9\u05ea")
add("indic",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "\u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0937\u093e \u092c\u0939\u0941\u0924 \u0938\u0941\u0902\u0926\u0930 \u0939\u0948\u0964",
    "\u0926\u094b\u0939\u0930\u093e \u0936\u0941\u0932\u094d\u0915", "\u0c35\u0c23\u0c15\u0c4d\u0c15\u0c02 (Telugu)",
    "\u0bb5\u0ba3\u0b95\u0bcd\u0b95\u0bae\u0bcd (Tamil)", "\u09a8\u09ae\u09b8\u09cd\u0995\u09be\u09b0 (Bengali)",
    "\u0a38\u0a24 \u0a38\u0a4d\u0a30\u0a40 \u0a05\u0a15\u0a3e\u0a32 (Punjabi)", "\u0ab5\u0abe\u0a98 \u0aa7\u0acd\u0ab0\u0ac1\u0ab5 (Gujarati)")
add("thai",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a", "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22\u0e44\u0e21\u0e48\u0e21\u0e35\u0e0a\u0e48\u0e2d\u0e07\u0e27\u0e48\u0e32\u0e07\u0e23\u0e30\u0e2b\u0e27\u0e48\u0e32\u0e07\u0e04\u0e33",
    "But ird and \u0e1b\u0e35   ird   \u0e14", "\u0e01\u0e23\u0e38\u0e07\u0e40\u0e17\u0e1e\u0e21\u0e2b\u0e32\u0e19\u0e04\u0e23 2567")
add("cyrillic",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!", "\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u044f\u0437\u044b\u043a \u043e\u0447\u0435\u043d\u044c \u0431\u043e\u0433\u0430\u0442\u044b\u0439.",
    "\u0423\u043a\u0440\u0430\u0457\u043d\u0441\u044c\u043a\u0430 \u043c\u043e\u0432\u0430: \u0457, \u0454, \u0491", "\u0421\u0440\u043f\u0441\u043a\u0438: \u0452, \u045b, \u045f",
    "\u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438 \u0435\u0437\u0438\u043a", "\u041c\u043e\u0441\u043a\u0432\u0430 2024 \u0433\u043e\u0434")
add("greek",
    "\u0393\u03b5\u03b9\u03b1 \u03c3\u03bf\u03c5 \u03ba\u03cc\u03c3\u03bc\u03b5", "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac: \u03b1\u03b2\u03b3\u03b4\u03b5 \u0391\u0392\u0393\u0394\u0395",
    "\u1f08\u03c1\u03c7\u1f74 \u03c4\u03bf\u1fe6 \u03b5\u1f50\u03b1\u03b3\u03b3\u03b5\u03bb\u03af\u03bf\u03c5", "\u03c0 \u2248 3.14, \u03a3 x\u1d62, \u03bb-calculus, \u0394t")
add("other_scripts",
    "\u10e5\u10d0\u10e0\u10d7\u10e3\u10da\u10d8 (Georgian)", "\u0540\u0561\u0575\u0565\u0580\u0565\u0576 (Armenian)",
    "\u12a0\u121b\u122d\u129b (Amharic)", "\u178f\u17d2\u179a\u17b8 (Khmer)", "\u1019\u103c\u1014\u103a\u1019\u102c (Burmese)",
    "\u0dc3\u0dd2\u0d82\u0dc4\u0dbd (Sinhala)", "Ti\u1ebfng Vi\u1ec7t c\u00f3 d\u1ea5u", "T\u00fcrk\u00e7e \u015fi\u015fli \u00e7\u00f6p",
    "Polski: \u017c\u00f3\u0142\u0107 g\u0119\u015bl\u0105 ja\u017a\u0144", "Deutsch: \u00c4rger \u00fcber \u00d6l, Stra\u00dfe",
    "Fran\u00e7ais: \u00e9l\u00e8ve, na\u00efve, c\u0153ur, \u00c7a", "Espa\u00f1ol: \u00bfqu\u00e9 tal? \u00a1ma\u00f1ana!",
    "\u16a0\u16c7\u16bb (runes)", "\u2801\u2803\u2809 (braille)")

# --- emoji ---------------------------------------------------------------------------
add("emoji",
    "\U0001F600", "\U0001F680 emoji test \U0001F389", "\U0001F608\U0001F917",
    "\U0001F44D\U0001F3FB\U0001F44D\U0001F3FC\U0001F44D\U0001F3FD\U0001F44D\U0001F3FE\U0001F44D\U0001F3FF",
    "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466 family",
    "\U0001F469\U0001F3FD\u200D\U0001F4BB coder", "\U0001F3F3\uFE0F\u200D\U0001F308 flag",
    "\U0001F1FA\U0001F1F8\U0001F1EF\U0001F1F5\U0001F1E9\U0001F1EA\U0001F1EE\U0001F1F3",
    "\U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F Scotland",
    "1\uFE0F\u20E3 #\uFE0F\u20E3 *\uFE0F\u20E3", "\u2764\uFE0F \u2764 \u263A\uFE0F", "\U0001F9D1\u200D\U0001F91D\u200D\U0001F9D1",
    "I love it \U0001F60D\U0001F60D\U0001F60D!!!", "\U0001F600" * 20,
    "\U0001FAE0\U0001FAE1\U0001FAE8 new emoji", "\U0001F408\u200D\u2B1B black cat",
    "text\U0001F525text\U0001F4AFtext", "\u2615\u26BD\u2708\uFE0F\u231A")

# --- combining characters / normalization forms -------------------------------------
add("combining",
    "e\u0301 vs \u00e9", "n\u0303 vs \u00f1", "A\u030a vs \u00c5 vs \u212b", "a\u0308o\u0308u\u0308",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u0334\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333",
    "\ufb01 \ufb02 ligatures", "\u2460\u2461\u2462 circled", "\uff28\uff45\uff4c\uff4c\uff4f fullwidth",
    "x\u0300\u0301\u0302\u0303\u0304\u0305\u0306\u0307\u0308", "\u0915\u094d\u200d\u0937", "\u1e9b\u0323")

# --- byte fallback: rare / unassigned / PUA / controls --------------------------------
add("byte_fallback",
    "\U00020000\U0002A6D6\U0002B740", "\U00020BB7\u91ce\u5bb6", "\ue000\ue001\uf8ff private use",
    "\U000F0000\U0010FFFD supplementary PUA", "\ufffd replacement", "\ufffd\ufffd\ufffd",
    "ctrl\u0001\u0002\u0003chars", "\u0007bell\u0008backspace\u001bescape", "\u007f delete \u0080\u0085\u009f C1",
    "\ufffe\uffff nonchars", "\U0001D11E musical \U0001D160", "\U00010000\U00010330 linear/gothic",
    "\U00012000\U00012001 cuneiform", "\U0001F9FF\U0001FA90", "\u0378 unassigned \u0380",
    "\U000E0001\U000E0020 tags", "\u2ff0\u2ff1 ideographic description", "a\u0001b", "\u0001",
    "\u001f\u001e\u001d\u001c")

# --- control / user-defined token text inside the input -------------------------------
add("special_text",
    "<start_of_turn>user\nhi<end_of_turn>",
    "<start_of_turn>user\nWrite a poem about the sea.<end_of_turn>\n<start_of_turn>model\n",
    "<start_of_turn>user\nHello!<end_of_turn>\n<start_of_turn>model\nNice to meet you.<end_of_turn>\n",
    "<bos>", "<eos>", "<pad>", "<unk>", "<bos><eos><pad><unk>", "<bos>Hello<eos>", "Hey<eos>. hi",
    " <bos> spaced <eos> ", "<s>", "</s>", "<s>>", "<s> Hello<s>how", " <s> Hello<s> how",
    "<mask>", "a <mask> b", "<2mass>", "[@BOS@]", "<unused0>", "<unused42><unused99>", "<unused100>",
    "a<unused5>b", "<<unused0>>", "[toxicity=0]", "[toxicity=0] low tox [toxicity=1] high",
    "<table>cell</table>", "text with <table> tag", "<h1>heading</h1>", "<0x41>", "0x41 <0xE4><0xB8>",
    "<start_of_turn", "start_of_turn>", "<start_of_turn><start_of_turn>", "<end_of_turn>\n\n",
    "<<bos>>", "<bo<eos>s>", "<BOS> <Eos>", "[MASK] [CLS] [SEP] <|endoftext|>", "<x>", "<", ">",
    "a<start_of_turn>b", "<start_of_turn>model\n\u2581x")

# --- long / repetitive ---------------------------------------------------------------
add("long",
    "a" * 300, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "ab" * 200, "the " * 250,
    "\u6d4b\u8bd5" * 200, "." * 100, "-" * 80 + "\n" + "=" * 80, "\U0001F600 " * 100)

# --- fuzz: deterministic random mixtures ------------------------------------------------
rng = random.Random(20240521)
POOL = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    + list(" " * 12 + "\t\n\r" + ".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`")
    + ["\u00e9", "\u00fc", "\u00df", "\u0436", "\u03bb", "\u05d0", "\u0628", "\u0915", "\u0e01",
       "\u4e2d", "\u6587", "\u3042", "\u30a2", "\ud55c", "\u2581", "\u00a0", "\u200d", "\u0301",
       "\ufffd", "\ue000", "\U00020000", "\U0001F600", "\U0001F3FD", "\u0001", "\u007f"]
    + ["the", "ing", " and", "tion", "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>",
       "<table>", "<unused7>", "  ", "    ", "\n\n", "\t\t", "123", "http://", "@x.com"]
)
for k in range(40):
    n = rng.choice((1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144))
    add("fuzz", "".join(rng.choice(POOL) for _ in range(n)))

# --- one very long mixed string (>= 10,000 chars) ----------------------------------------
parts = [t for c, t in rows if c not in ("fuzz", "long", "empty")]
rng2 = random.Random(7)
big = []
size = 0
while size < 12000:
    t = rng2.choice(parts)
    sep = rng2.choice((" ", "\n", "  ", "\t", "", "\n\n", " \n"))
    big.append(t + sep)
    size += len(t) + len(sep)
big = "".join(big)
add("very_long", big)

# --- checks and output --------------------------------------------------------------------
seen = set()
out_rows = []
for cat, t in rows:
    if t in seen:
        continue
    seen.add(t)
    assert "\x00" not in t
    t.encode("utf-8")  # raises on lone surrogates
    out_rows.append((cat, t))
assert len(out_rows) >= 320, len(out_rows)
assert max(len(t) for _, t in out_rows) >= 10000

path = sys.argv[1] if len(sys.argv) > 1 else OUT
with open(path, "w", encoding="utf-8", newline="\n") as f:
    for cat, t in out_rows:
        f.write(json.dumps({"cat": cat, "text": t}, ensure_ascii=False) + "\n")
cats = {}
for cat, _ in out_rows:
    cats[cat] = cats.get(cat, 0) + 1
sys.stderr.write("make_tok_strings: %d strings, %d categories -> %s\n" % (len(out_rows), len(cats), path))
