// Unicode data that lets PCRE2 (Unicode 14 in Debian 12's 10.42) and ICU 72 (Unicode 15) behave
// like the Unicode versions inside Hugging Face tokenizers 0.23 (Oniguruma: Unicode 16; Rust
// std: 16; unicode-normalization-alignments: 9.0). Generated: see unicode_tables.cc.
#pragma once

#include <string_view>

namespace m2fp4 {

// PCRE2 character-class text (e.g. "\x{1C89}-\x{1C8A}...") of the code points that Oniguruma
// puts in general category `name` (L, Lu, ..., Zp) beyond Unicode 14; "" if none, nullptr if
// `name` is not a general category.
const char* unicode_category_extra_ranges(std::string_view name);

// Oniguruma's \w (Alphabetic, marks, decimal digits, connector punctuation, joiners), written
// out as PCRE2 class text.
const char* oniguruma_word_class_ranges();

// Whether Hugging Face's StripAccents removes `cp` (general category M in Unicode 9.0).
bool is_hf_combining_mark(char32_t cp);

// Rust's char::to_lowercase of `cp` where it is newer than Unicode 14/15 (ICU 72), else 0.
char32_t hf_lowercase_extra(char32_t cp);

}  // namespace m2fp4
