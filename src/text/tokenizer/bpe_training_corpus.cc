// The built-in text the tiny tokenizer is trained on: written for this project, a mix of the
// kinds of text a chat model sees (prose, chat turns, code, numbers, CJK).
#include <string>

#include "text/tokenizer/bpe_trainer.h"

namespace m2fp4 {

const std::string& builtin_training_corpus() {
  static const std::string corpus =
      R"CORPUS(The morning train left the station at seven, and the city slowly woke up behind it.
People read the news on their phones, drank coffee from paper cups, and looked out of the
window at the fields, the river and the low hills that the fog had not yet left. It was
going to be a long day, but nobody seemed to mind: the weather was mild, the coffee was hot,
and there would be time, later, to think about the meetings and the reports.

A good explanation starts from what the reader already knows. It names the new idea, shows
one small example, and only then states the general rule. When the rule has exceptions, it
says so plainly, and it tells the reader where to look for the details. Short sentences help;
so do concrete numbers, such as 3 apples, 12 days, 250 grams, 1,024 bytes or 3.14159.

Question: What is the capital of France?
Answer: The capital of France is Paris. It has been the capital for most of the country's
history, and today it is home to about 2.1 million people (12 million in the wider region).

User: Can you help me write a function that checks whether a number is prime?
Assistant: Sure. Here is a simple version in Python. It tries every divisor up to the square
root of the number, which is fast enough for small inputs.

```python
def is_prime(n: int) -> bool:
    """Return True if n is a prime number."""
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


primes = [n for n in range(50) if is_prime(n)]
print(f"found {len(primes)} primes: {primes}")
```

The same idea in C++, with a loop over odd divisors only:

```cpp
#include <cstdint>
#include <vector>

bool is_prime(std::uint64_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (std::uint64_t d = 3; d * d <= n; d += 2) {
    if (n % d == 0) return false;
  }
  return true;
}

int main() {
  std::vector<int> found;
  for (int i = 0; i < 100; ++i) {
    if (is_prime(i)) found.push_back(i);
  }
  return static_cast<int>(found.size());
}
```

And in Rust, JavaScript and Go:

```rust
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}
```

```javascript
function isPrime(n) {
  if (n < 2) return false;
  for (let d = 2; d * d <= n; d++) {
    if (n % d === 0) return false;
  }
  return true;
}
const list = Array.from({ length: 30 }, (_, i) => i).filter(isPrime);
console.log(`primes: ${list.join(", ")}`);
```

```go
package main

import "fmt"

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

func main() {
	fmt.Println(isPrime(97), isPrime(100))
}
```

A query that counts orders per customer:

```sql
SELECT c.name, COUNT(o.id) AS orders, SUM(o.total) AS spent
FROM customers AS c
LEFT JOIN orders AS o ON o.customer_id = c.id
WHERE o.created_at >= '2024-01-01'
GROUP BY c.name
ORDER BY spent DESC
LIMIT 10;
```

And a shell script that builds the project and runs the tests:

```bash
#!/usr/bin/env bash
set -euo pipefail
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j 2
(cd build && ctest --output-on-failure)
echo "done: $(date +%H:%M:%S)"
```

{"name": "get_weather", "arguments": {"city": "Berlin", "unit": "celsius", "days": 3}}
{"temperature": 21.5, "humidity": 0.63, "wind": [12, 18, 25], "ok": true, "note": null}

# Release notes

- Faster start-up: the model now loads in 1.8 s instead of 4.2 s.
- The `--max-tokens` flag accepts values up to 131072.
- Fixed a crash when the prompt was empty.
- **Breaking:** the `legacy` option was removed; see the [migration guide](docs/migrate.md).

| format | bits | block | scale |
|--------|------|-------|-------|
| NVFP4  | 4    | 16    | E4M3  |
| MXFP4  | 4    | 32    | E8M0  |

It's not that we don't know; it's that we haven't checked. They're sure it'll work, and we've
seen it before, but I'd still test it. YOU'LL SEE. She said: "Don't worry, it's fine."

今天天气很好，我们一起去公园散步吧。机器学习是人工智能的一个重要分支，它让计算机能够从数据中
学习规律。这个模型有两千多亿个参数，但每个词只激活其中的一小部分。请用中文回答下面的问题：
量化以后，模型的质量下降了多少？我们用困惑度和KL散度来衡量。

東京は日本の首都です。今日はとても良い天気ですね。新しいモデルを試してみましょう。
서울은 한국의 수도입니다. 오늘 날씨가 정말 좋네요. 함께 점심을 먹으러 갈까요?

Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 256 1000 2048 65536 1000000 3.5 -7 +12 1e-6 0x1F
Dates and times: 2024-05-17, 12:30:45, 1999-12-31T23:59:59Z. Versions: v1.2.3, 0.20.1.
Prices: $19.99, 5 EUR, 100%, 3/4, 7:1. Emoji: 🙂 👍 🚀 ✨ Symbols: → ← ≤ ≥ ≠ × ÷ ° © ™
Café, naïve, résumé, façade, Zürich, São Paulo, Ελληνικά, русский язык, العربية, हिन्दी.

In the end, the train reached the coast. The sea was grey and calm, the sky was wide and
bright, and the small town by the harbour was just opening its shops. Someone was selling
fresh bread; someone else was painting a boat. It was, everybody agreed, a very good day.
)CORPUS";
  return corpus;
}

}  // namespace m2fp4
