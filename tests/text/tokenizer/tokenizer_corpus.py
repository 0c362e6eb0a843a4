"""Test corpus for tokenizer parity, generated (deterministically) rather than downloaded.

Everything a byte-level BPE tokenizer can get wrong: code in several languages, CJK, Arabic,
Hindi, emoji with ZWJ sequences, flags and skin tones, combining marks and decomposed accents,
long whitespace and newline runs, tabs, odd Unicode spaces, numbers of many lengths,
contractions in mixed case, and strings that contain (or almost contain) special tokens.
Used by tokenizer_parity_test.py.
"""

import random

CODE = {
    "python": '''import os, sys
from dataclasses import dataclass, field

@dataclass
class Config:
    name: str = "m2fp4"
    layers: int = 62
    experts: list[int] = field(default_factory=lambda: [256, 8])

def load(path: str) -> dict:
    """Read a JSON file; raise if it's missing."""
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)  # noqa: E501

if __name__ == '__main__':
    cfg = Config()
    print(f"{cfg.name!r} has {cfg.layers:>4d} layers\\tand {len(cfg.experts)} expert fields")
    for i, x in enumerate(range(10)):
        if i % 3 == 0 and x != 7: continue
        elif x >= 0x1F or x <= -1e-3: break
''',
    "cpp": '''#include <algorithm>
#include <vector>

namespace m2fp4 {

template <typename T>
T clamp_sum(const std::vector<T>& xs, T lo, T hi) noexcept {
  T total{};
  for (const auto& x : xs) total += x;  // accumulate
  return std::min(std::max(total, lo), hi);
}

struct Block { uint8_t scale; uint8_t q[8]; };
static_assert(sizeof(Block) == 9, "packed");

}  // namespace m2fp4

int main(int argc, char** argv) {
  std::vector<float> v{1.5f, -2.25f, 3e-7f};
  return clamp_sum(v, -1.0f, 1.0f) > 0.5f ? 0 : argc;
}
''',
    "rust": '''use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Token<'a> { Word(&'a str), Num(u64), Punct(char) }

impl<'a> Token<'a> {
    pub fn len(&self) -> usize {
        match self { Token::Word(w) => w.len(), Token::Num(n) => n.to_string().len(), _ => 1 }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for w in "the cat's hat isn't the cat's".split_whitespace() {
        *counts.entry(w).or_insert(0) += 1;
    }
    println!("{:?} {}", counts, u64::MAX);
    Ok(())
}
''',
    "javascript": '''// @ts-check
const express = require('express');
const app = express();

app.get('/api/v1/users/:id', async (req, res) => {
  const { id } = req.params;
  try {
    const user = await db.users.findOne({ where: { id: Number(id) } });
    if (!user) return res.status(404).json({ error: `user ${id} not found` });
    res.json({ ...user, fullName: `${user.first} ${user.last}`.trim() });
  } catch (e) {
    console.error(e?.message ?? e); res.sendStatus(500);
  }
});

export default () => [1, 2, 3].map((x) => x ** 2).filter(Boolean) === null;
''',
    "go": '''package main

import (
\t"fmt"
\t"strings"
)

type Shape interface {
\tArea() float64
}

type Rect struct{ W, H float64 }

func (r Rect) Area() float64 { return r.W * r.H }

func main() {
\tshapes := []Shape{Rect{3, 4}, Rect{W: 0.5, H: 12}}
\tvar sb strings.Builder
\tfor i, s := range shapes {
\t\tfmt.Fprintf(&sb, "%d:%.2f;", i, s.Area())
\t}
\tfmt.Println(sb.String(), len(shapes) != 0 && true)
}
''',
    "sql": '''-- monthly revenue per region
WITH monthly AS (
    SELECT region_id, DATE_TRUNC('month', created_at) AS month, SUM(amount_cents) / 100.0 AS revenue
    FROM payments
    WHERE status IN ('paid', 'refunded') AND created_at BETWEEN '2023-01-01' AND '2023-12-31'
    GROUP BY 1, 2
)
SELECT r.name, m.month, m.revenue, LAG(m.revenue) OVER (PARTITION BY r.name ORDER BY m.month) AS prev
FROM monthly m JOIN regions r ON r.id = m.region_id
ORDER BY r.name, m.month DESC;
''',
    "shell": '''#!/bin/sh
set -eu
for f in ./data/*.jsonl; do
  n=$(wc -l < "$f")
  if [ "$n" -gt 1000 ]; then
    echo "big: $f ($n lines)" >&2
  fi
done
grep -rn --include='*.py' 'TODO\\|FIXME' src/ | awk -F: '{print $1}' | sort | uniq -c | sort -rn | head -n 5
tar -czf "backup-$(date +%Y%m%d).tar.gz" ~/.config && rm -rf /tmp/build_* 2>/dev/null || true
''',
}

PROSE = [
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs!",
    "It's a truth universally acknowledged; we're sure they'll agree, and I'd bet you've seen it.",
    "IT'S LOUD. WE'RE HERE. THEY'LL COME. I'M SURE. YOU'VE WON. HE'D GO. It'S mIxEd, wE'rE tOo, They'Ll see.",
    "Don't, won't, can't, shouldn't've, y'all'd've, 'tis, rock 'n' roll, the '90s, O'Neil's pub.",
    "Curly quotes: it’s, we’re, ‘single’, “double”, — em dash – en dash … ellipsis.",
    "Ünïcödé façade naïve résumé coöperate Ångström São Tomé Đurđevac Łódź İstanbul ß ẞ ſ K Å.",
    "Γειά σου κόσμε! Ελληνικά γράμματα: αβγδεζηθικλμνξοπρστυφχψω ΣΊΣΥΦΟΣ.",
    "Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Markdown: # Title\n\n## Sub-title\n\n* item one\n* item **two** with `code` and [a link](https://example.com/a?b=c&d=e#f).\n\n> quote\n\n1. first\n2. second\n",
    "URL: https://huggingface.co/MiniMaxAI/MiniMax-M2/blob/main/tokenizer.json?download=true and e-mail: someone@example.org",
    "Path C:\\Users\\me\\Documents\\file (1).txt and /usr/local/lib/python3.11/site-packages/__init__.py",
    "JSON: {\"a\": [1, 2.5, -3e10, true, null], \"b\": {\"c\": \"d\\n\\t\\u00e9\"}}",
    "LaTeX: $E = mc^2$, \\frac{a}{b}, \\sum_{i=1}^{n} x_i^2 \\leq \\int_0^\\infty e^{-x} dx.",
]

MULTILINGUAL = [
    "机器学习是人工智能的一个分支。它使计算机能够在没有明确编程的情况下学习。",
    "混合专家模型（MoE）每个词只激活一部分参数，所以推理速度快。量化到4位以后显存占用减少了75%。",
    "日本語のテキスト：吾輩は猫である。名前はまだ無い。カタカナとひらがなとKanji混在。ｶﾀｶﾅ半角",
    "한국어 텍스트: 안녕하세요, 세계! 다람쥐 헌 쳇바퀴에 타고파. 한글 자모: 한",
    "العربية: مرحبا بالعالم! هذه جملة باللغة العربية مع أرقام ١٢٣٤٥ و 12345.",
    "हिन्दी: नमस्ते दुनिया! यह एक परीक्षण वाक्य है। संख्या: १२३४५",
    "ไทย: สวัสดีชาวโลก ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    "עברית: שלום עולם! זהו משפט בדיקה.",
    "Tiếng Việt: Xin chào thế giới! Tôi yêu tiếng Việt.",
    "Emoji: 😀😃😄 👍🏻👍🏼👍🏽👍🏾👍🏿 👨‍👩‍👧‍👦 👩🏽‍💻 🏳️‍🌈 🏴‍☠️ ❤️‍🔥 🧑🏿‍🤝‍🧑🏻 1️⃣ #️⃣ ✋🏼",
    "Flags: 🇫🇷🇩🇪🇯🇵🇨🇳🇺🇸🇧🇷 🏴󠁧󠁢󠁳󠁣󠁴󠁿 and text🇬🇧after",
    "Combining: e\u0301 a\u0300 n\u0303 o\u0308 A\u030a c\u0327 Z\u0335\u0321\u0322a\u0336\u0317l\u034fg\u0358o\u0489 "
    "\u1100\u1161\u11a8 (jamo) \u0915\u094d\u0937 Å Å ﬁ ﬀ ① ⅻ ²³ ½",
    "Zero-width: a\u200bb c\u200cd e\u200df \ufeffBOM \u00adsoft\u00adhyphen \u2060wj",
]

WHITESPACE = [
    "a  b   c    d     e",
    "line1\nline2\n\nline4\n\n\n\nline8",
    "\t\ttabs\tand spaces  \t mixed\t",
    "windows\r\nline\r\n\r\nends\r",
    "   leading and trailing   ",
    "\n\n\n",
    " ",
    "\u00a0nbsp\u00a0\u00a0runs\u3000ideographic\u3000space\u2003em\u2009thin",
    "odd\x85nel\u2028line\u2029para\x0bvt\x0cff\x1cfs\x1dgs",
    "x" + " " * 100 + "y",
    "indent\n" + "    " * 10 + "deep\n" + "\t" * 12 + "tabs",
    "trailing spaces before newline   \n   \n\t\n",
]


def numbers(rng: random.Random) -> list[str]:
    out = []
    for length in range(1, 41):
        out.append("".join(rng.choice("0123456789") for _ in range(length)))
    out += [
        "3.14159265358979323846", "-0.000001", "1e-10", "6.022e23", "1,234,567.89", "1_000_000",
        "0xDEADBEEF", "0b1010", "192.168.0.1", "2024-05-17T12:30:45.123Z", "+1 (555) 010-9999",
        "١٢٣٤٥٦٧٨٩٠", "१२३४५", "１２３４５", "Ⅻ", "x²+y³", "42nd", "v1.2.3-rc.4+build.5", "100%",
    ]
    return out


def special_token_texts(specials: list[str], rng: random.Random) -> list[str]:
    out = []
    for s in specials:
        out.append(s)
        out.append(f"before {s} after")
        out.append(f"{s}{s}")
        out.append(f"  {s}\n")
        if len(s) > 2:
            out.append(s[:-1] + " " + s[-1])  # almost a special token
            out.append(s[:-1])
            out.append(f"x{s[1:]}")
    picks = rng.sample(specials, min(len(specials), 30))
    out.append("".join(f"text {p} more " for p in picks))
    out.append("".join(picks))
    return out


POOL = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    + list(" \t\n\r ,.;:!?'\"()[]{}<>/\\|-_=+*&^%$#@~`")
    + ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'Re"]
    + list("éèêëàâäöüßçñøåæœÉÀÖÜ")
    + list("的一是不了人我在有他这中大来上国个到说们为子和你地出道")
    + list("あいうえおかきくけこアイウエオ한국어")
    + ["😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "\u0301", "\u0308", "\u200d", "\u00a0", "\u3000", "\x85", "\u2028"]
    + ["<|", "|>", "<think>", "</think>", "<｜", "｜>", "▁"]
)


def fuzz(rng: random.Random, count: int, max_len: int) -> list[str]:
    return ["".join(rng.choice(POOL) for _ in range(rng.randint(1, max_len))) for _ in range(count)]


def corpus(specials: list[str], seed: int = 1234, big_bytes: int = 1 << 20) -> list[str]:
    """Texts to encode: the pieces, fuzz, and one text of about `big_bytes` built from them."""
    rng = random.Random(seed)
    pieces = list(CODE.values()) + PROSE + MULTILINGUAL + WHITESPACE + numbers(rng)
    pieces += special_token_texts(specials, rng)
    # Each line of the code and prose on its own too (exercises starts and ends of lines).
    for block in list(CODE.values()) + PROSE:
        pieces += [line for line in block.split("\n") if line]
    texts = pieces + fuzz(rng, 400, 40)
    big = []
    size = 0
    while size < big_bytes:
        p = rng.choice(pieces)
        sep = rng.choice(["\n", "\n\n", " ", "", "\t", "  \n"])
        big.append(p + sep)
        size += len((p + sep).encode("utf-8"))
    texts.append("".join(big))
    return texts

