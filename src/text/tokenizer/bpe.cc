#include "text/tokenizer/bpe.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "text/tokenizer/unicode.h"

namespace m2fp4 {

uint64_t hash_bytes(std::string_view bytes) {
  const char* p = bytes.data();
  size_t n = bytes.size();
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    uint64_t v = 0;
    std::memcpy(&v, p, n);
    h = (h ^ v) * 0x94D049BB133111EBull;
    h ^= h >> 29;
  }
  h ^= h >> 32;
  h *= 0xD6E8FEB86659FD93ull;
  h ^= h >> 32;
  return h | 1;  // 0 marks an empty cache slot
}

// ---- PieceCache ----

const int32_t* PieceCache::find(std::string_view key, uint64_t hash, uint32_t& count) const {
  if (slots_.empty()) return nullptr;
  const size_t mask = slots_.size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.hash == 0) return nullptr;
    if (s.hash == hash && s.key_length == key.size() &&
        std::memcmp(keys_.data() + s.key_offset, key.data(), key.size()) == 0) {
      count = s.ids_count;
      return ids_.data() + s.ids_offset;
    }
  }
}

void PieceCache::clear() {
  slots_.clear();
  keys_.clear();
  ids_.clear();
  size_ = 0;
}

void PieceCache::grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(old.empty() ? 4096 : old.size() * 2, Slot{});
  const size_t mask = slots_.size() - 1;
  for (const Slot& s : old) {
    if (s.hash == 0) continue;
    size_t i = s.hash & mask;
    while (slots_[i].hash != 0) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

void PieceCache::insert(std::string_view key, uint64_t hash, const int32_t* ids, uint32_t count) {
  if (key.size() > kMaxKeyBytes) return;
  if (size_ >= kMaxEntries) clear();  // bounded memory: start over when full
  if ((size_ + 1) * 2 > slots_.size()) grow();
  const size_t mask = slots_.size() - 1;
  size_t i = hash & mask;
  while (slots_[i].hash != 0) i = (i + 1) & mask;
  Slot& s = slots_[i];
  s.hash = hash;
  s.key_offset = static_cast<uint32_t>(keys_.size());
  s.key_length = static_cast<uint32_t>(key.size());
  s.ids_offset = static_cast<uint32_t>(ids_.size());
  s.ids_count = count;
  keys_.append(key);
  ids_.insert(ids_.end(), ids, ids + count);
  ++size_;
}

// ---- MergeMap ----

void BpeModel::MergeMap::reserve(size_t count) {
  size_t capacity = 16;
  shift_ = 60;
  while (capacity < count * 2) {
    capacity *= 2;
    --shift_;
  }
  slots_.assign(capacity, Slot{});
  mask_ = capacity - 1;
  size_ = 0;
}

void BpeModel::MergeMap::insert_or_assign(int32_t left, int32_t right, uint32_t rank,
                                          int32_t new_id) {
  const uint64_t key = pack(left, right);
  size_t i = index_of(key);
  while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask_;
  if (slots_[i].key == kEmpty) ++size_;
  slots_[i] = Slot{key, rank, new_id};
}

// ---- Loading ----

namespace {

std::optional<std::string> optional_string(const nlohmann::json& spec, const char* key) {
  if (!spec.contains(key) || spec[key].is_null()) return std::nullopt;
  M2_CHECK(spec[key].is_string(), "tokenizer.json: model.", key, " must be a string");
  return spec[key].get<std::string>();
}

bool optional_bool(const nlohmann::json& spec, const char* key) {
  if (!spec.contains(key) || spec[key].is_null()) return false;
  M2_CHECK(spec[key].is_boolean(), "tokenizer.json: model.", key, " must be a boolean");
  return spec[key].get<bool>();
}

}  // namespace

int64_t max_vocab_id(size_t entries) {
  return std::min<int64_t>(2 * static_cast<int64_t>(entries) + 65536, int64_t{1} << 31);
}

BpeModel BpeModel::from_json(const nlohmann::json& spec) {
  M2_CHECK(spec.is_object(), "tokenizer.json: model must be an object");
  const std::string type = spec.value("type", std::string("BPE"));
  M2_CHECK(type == "BPE", "tokenizer.json: unsupported model type '", type,
           "' (only BPE is supported)");
  if (spec.contains("dropout") && !spec["dropout"].is_null()) {
    M2_CHECK(spec["dropout"].is_number() && spec["dropout"].get<double>() == 0.0,
             "tokenizer.json: BPE dropout is not supported (encoding would be random)");
  }
  M2_CHECK(spec.contains("vocab") && spec["vocab"].is_object(),
           "tokenizer.json: BPE model without a vocab object");
  M2_CHECK(spec.contains("merges") && spec["merges"].is_array(),
           "tokenizer.json: BPE model without a merges list");

  BpeModel model;
  model.unk_token_ = optional_string(spec, "unk_token");
  model.continuing_subword_prefix_ = optional_string(spec, "continuing_subword_prefix");
  model.end_of_word_suffix_ = optional_string(spec, "end_of_word_suffix");
  model.fuse_unk_ = optional_bool(spec, "fuse_unk");
  model.byte_fallback_ = optional_bool(spec, "byte_fallback");
  model.ignore_merges_ = optional_bool(spec, "ignore_merges");

  const auto& vocab = spec["vocab"];
  model.vocab_.reserve(vocab.size() * 2);
  // Id tables are sized by the largest id: a vocabulary may have holes, but not ids far beyond
  // its size (an id near 2^31 would ask for tens of GB).
  const int64_t id_limit = max_vocab_id(vocab.size());
  int64_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    M2_CHECK(it.value().is_number_integer() &&
                 (it.value().is_number_unsigned() || it.value().get<int64_t>() >= 0),
             "tokenizer.json: vocab id of '", it.key(), "' is not a non-negative integer");
    M2_CHECK(it.value().get<uint64_t>() < static_cast<uint64_t>(id_limit),
             "tokenizer.json: vocab id ", it.value().get<uint64_t>(), " of '", it.key(),
             "' is out of range for a vocabulary of ", vocab.size(), " entries (limit ", id_limit,
             ")");
    const auto id = it.value().get<int64_t>();
    model.vocab_[it.key()] = static_cast<int32_t>(id);
    max_id = std::max(max_id, id);
  }
  model.id_to_token_.resize(static_cast<size_t>(max_id + 1));
  model.id_present_.assign(static_cast<size_t>(max_id + 1), 0);
  for (const auto& [token, id] : model.vocab_) {
    model.id_to_token_[id] = token;
    model.id_present_[id] = 1;
  }

  const auto& merges = spec["merges"];
  model.merges_.reserve(merges.size());
  const size_t prefix_length =
      model.continuing_subword_prefix_ ? model.continuing_subword_prefix_->size() : 0;
  std::string left;
  std::string right;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& merge = merges[rank];
    if (merge.is_array()) {
      M2_CHECK(merge.size() == 2 && merge[0].is_string() && merge[1].is_string(),
               "tokenizer.json: merge ", rank, " is not a pair of strings");
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      M2_CHECK(merge.is_string(), "tokenizer.json: merge ", rank, " is not a string or pair");
      const std::string line = merge.get<std::string>();
      const size_t space = line.find(' ');
      M2_CHECK(space != std::string::npos && line.find(' ', space + 1) == std::string::npos,
               "tokenizer.json: merge ", rank, " is not two tokens separated by a space: '", line,
               "'");
      left = line.substr(0, space);
      right = line.substr(space + 1);
    }
    const int32_t left_id = model.token_to_id(left);
    const int32_t right_id = model.token_to_id(right);
    M2_CHECK(left_id >= 0, "tokenizer.json: merge ", rank, " uses '", left,
             "', which is not in the vocab");
    M2_CHECK(right_id >= 0, "tokenizer.json: merge ", rank, " uses '", right,
             "', which is not in the vocab");
    M2_CHECK(right.size() >= prefix_length, "tokenizer.json: merge ", rank, " right token '", right,
             "' is shorter than continuing_subword_prefix");
    const std::string merged = left + right.substr(prefix_length);
    const int32_t merged_id = model.token_to_id(merged);
    M2_CHECK(merged_id >= 0, "tokenizer.json: merge ", rank, " makes '", merged,
             "', which is not in the vocab");
    // Like Hugging Face (a map built in list order), a repeated pair keeps its last rank.
    model.merges_.insert_or_assign(left_id, right_id, static_cast<uint32_t>(rank), merged_id);
  }

  const bool decorated =
      (model.continuing_subword_prefix_ && !model.continuing_subword_prefix_->empty()) ||
      (model.end_of_word_suffix_ && !model.end_of_word_suffix_->empty());
  model.byte_ids_usable_ = !decorated;
  std::string symbol;
  for (int b = 0; b < 256; ++b) {
    symbol.clear();
    append_utf8(symbol, byte_to_unicode(static_cast<uint8_t>(b)));
    model.byte_ids_[b] = model.token_to_id(symbol);
    if (model.byte_ids_[b] < 0) model.byte_ids_usable_ = false;
  }
  return model;
}

int32_t BpeModel::token_to_id(std::string_view token) const {
  const auto it = vocab_.find(std::string(token));
  return it == vocab_.end() ? -1 : it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !id_present_[id]) {
    return nullptr;
  }
  return &id_to_token_[id];
}

// ---- Encoding ----

void BpeModel::tokenize(std::string_view piece, bool byte_level, BpeWorkspace& workspace,
                        std::vector<int32_t>& ids) const {
  const uint64_t hash = hash_bytes(piece);
  uint32_t count = 0;
  if (const int32_t* cached = workspace.cache.find(piece, hash, count)) {
    ids.insert(ids.end(), cached, cached + count);
    return;
  }
  encode_word(piece, byte_level, workspace);
  const std::vector<int32_t>& word = workspace.word_ids;
  workspace.cache.insert(piece, hash, word.data(), static_cast<uint32_t>(word.size()));
  ids.insert(ids.end(), word.begin(), word.end());
}

void BpeModel::encode_word(std::string_view piece, bool byte_level, BpeWorkspace& workspace) const {
  workspace.word_ids.clear();
  std::string_view word = piece;
  const bool need_text = !byte_level || ignore_merges_ || !byte_ids_usable_;
  if (byte_level && need_text) {
    workspace.text.clear();
    append_byte_level(piece, workspace.text);
    word = workspace.text;
  }
  if (ignore_merges_) {
    const int32_t id = token_to_id(word);
    if (id >= 0) {
      workspace.word_ids.push_back(id);
      return;
    }
  }
  if (byte_level && byte_ids_usable_) {
    // Fast path: one symbol per raw byte.
    auto& symbols = workspace.symbols;
    symbols.resize(piece.size());
    const auto n = static_cast<int32_t>(piece.size());
    for (int32_t i = 0; i < n; ++i) {
      symbols[i] = {byte_ids_[static_cast<uint8_t>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1, 1};
    }
  } else {
    initial_symbols(word, workspace);
  }
  merge_symbols(workspace);
  for (const auto& s : workspace.symbols) {
    if (s.length != 0) workspace.word_ids.push_back(s.id);
  }
}

void BpeModel::initial_symbols(std::string_view word, BpeWorkspace& workspace) const {
  auto& symbols = workspace.symbols;
  symbols.clear();
  auto add = [&symbols](int32_t id, size_t length) {
    const auto index = static_cast<int32_t>(symbols.size());
    if (!symbols.empty()) symbols.back().next = index;
    symbols.push_back({id, index - 1, -1, static_cast<uint32_t>(length)});
  };
  bool unk_pending = false;
  int32_t unk_id = -1;
  size_t unk_length = 0;
  std::string s;
  char byte_token[8];
  size_t pos = 0;
  while (pos < word.size()) {
    const size_t length =
        std::min(utf8_sequence_length(static_cast<uint8_t>(word[pos])), word.size() - pos);
    const bool is_first = pos == 0;
    const bool is_last = pos + length == word.size();
    s.assign(word.substr(pos, length));
    pos += length;
    if (!is_first && continuing_subword_prefix_) s.insert(0, *continuing_subword_prefix_);
    if (is_last && end_of_word_suffix_) s += *end_of_word_suffix_;
    const int32_t id = token_to_id(s);
    if (id >= 0) {
      if (unk_pending) {
        add(unk_id, unk_length);
        unk_pending = false;
      }
      add(id, length);
      continue;
    }
    if (byte_fallback_) {
      std::vector<int32_t> byte_ids;
      for (char c : s) {
        std::snprintf(byte_token, sizeof(byte_token), "<0x%02X>", static_cast<uint8_t>(c));
        const int32_t byte_id = token_to_id(byte_token);
        if (byte_id < 0) break;
        byte_ids.push_back(byte_id);
      }
      if (byte_ids.size() == s.size()) {
        for (int32_t b : byte_ids) add(b, 1);
        continue;
      }
    }
    if (unk_token_) {
      const int32_t unk = token_to_id(*unk_token_);
      M2_CHECK(unk >= 0, "tokenizer.json: unk_token '", *unk_token_, "' is not in the vocab");
      if (unk_pending && fuse_unk_) {
        unk_length += length;
      } else {
        if (unk_pending) add(unk_id, unk_length);
        unk_pending = true;
        unk_id = unk;
        unk_length = length;
      }
    }
    // Without unk_token or byte fallback, Hugging Face drops the character.
  }
  if (unk_pending) add(unk_id, unk_length);
}

void BpeModel::merge_symbols(BpeWorkspace& workspace) const {
  auto& symbols = workspace.symbols;
  auto& queue = workspace.queue;
  queue.clear();
  // Min-heap on (rank, pos), as Hugging Face's Word::merge_all orders its queue.
  const auto later = [](const BpeWorkspace::Merge& a, const BpeWorkspace::Merge& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  uint32_t rank = 0;
  int32_t new_id = 0;
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (merges_.find(symbols[i].id, symbols[i + 1].id, rank, new_id)) {
      queue.push_back({rank, static_cast<uint32_t>(i), new_id});
    }
  }
  std::make_heap(queue.begin(), queue.end(), later);
  const auto n = static_cast<int32_t>(symbols.size());
  while (!queue.empty()) {
    std::pop_heap(queue.begin(), queue.end(), later);
    const BpeWorkspace::Merge top = queue.back();
    queue.pop_back();
    auto& current = symbols[top.pos];
    if (current.length == 0 || current.next == -1) continue;
    const int32_t next_pos = current.next;
    const BpeWorkspace::Symbol right = symbols[next_pos];
    // Skip entries made stale by an earlier merge.
    if (!merges_.find(current.id, right.id, rank, new_id) || new_id != top.new_id) continue;
    current.id = top.new_id;
    current.length += right.length;
    current.next = right.next;
    symbols[next_pos].length = 0;
    if (right.next > -1 && right.next < n) symbols[right.next].prev = static_cast<int32_t>(top.pos);
    if (current.prev >= 0) {
      const auto& previous = symbols[current.prev];
      if (merges_.find(previous.id, current.id, rank, new_id)) {
        queue.push_back({rank, static_cast<uint32_t>(current.prev), new_id});
        std::push_heap(queue.begin(), queue.end(), later);
      }
    }
    if (current.next > -1 && current.next < n) {
      if (merges_.find(current.id, symbols[current.next].id, rank, new_id)) {
        queue.push_back({rank, top.pos, new_id});
        std::push_heap(queue.begin(), queue.end(), later);
      }
    }
  }
}

}  // namespace m2fp4
