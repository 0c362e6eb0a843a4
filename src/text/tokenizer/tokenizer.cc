#include "text/tokenizer/tokenizer.h"

#include <algorithm>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/file.h"
#include "base/json_depth.h"
#include "base/log.h"
#include "text/tokenizer/unicode.h"

namespace m2fp4 {

struct Tokenizer::Workspace {
  BpeWorkspace bpe;
  PreTokenizerScratch pre;
  std::vector<TextSegment> raw_segments;
  std::vector<TextSegment> normalized_segments;
};

// Borrows a workspace from the tokenizer's pool for the duration of one call.
class Tokenizer::WorkspaceLease {
 public:
  explicit WorkspaceLease(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {
    std::lock_guard<std::mutex> lock(*tokenizer_.pool_mutex_);
    if (tokenizer_.pool_.empty()) {
      workspace_ = std::make_unique<Workspace>();
    } else {
      workspace_ = std::move(tokenizer_.pool_.back());
      tokenizer_.pool_.pop_back();
    }
  }
  ~WorkspaceLease() {
    std::lock_guard<std::mutex> lock(*tokenizer_.pool_mutex_);
    tokenizer_.pool_.push_back(std::move(workspace_));
  }
  WorkspaceLease(const WorkspaceLease&) = delete;
  WorkspaceLease& operator=(const WorkspaceLease&) = delete;
  Workspace& get() { return *workspace_; }

 private:
  const Tokenizer& tokenizer_;
  std::unique_ptr<Workspace> workspace_;
};

Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

namespace {

nlohmann::json parse_json(std::string_view text, const char* what) {
  check_json_depth(text, what);
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    fail(what, " is not valid JSON: ", e.what());
  }
}

bool json_bool(const nlohmann::json& j, const char* key, bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  M2_CHECK(j[key].is_boolean(), "tokenizer.json: added token field '", key, "' must be a boolean");
  return j[key].get<bool>();
}

// A tokenizer_config.json token: a string, {"content": ...} (AddedToken), or null.
std::optional<std::string> config_token(const nlohmann::json& config, const char* key) {
  if (!config.contains(key) || config[key].is_null()) return std::nullopt;
  const auto& value = config[key];
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value["content"].is_string()) {
    return value["content"].get<std::string>();
  }
  fail("tokenizer_config.json: ", key, " must be a string or an object with content");
}

// Runs one part of loading; a nlohmann type_error (or other JSON access error) a malformed part
// still raises becomes an m2fp4::Error naming the file and the part.
template <typename Load>
void load_part(const char* file, const char* part, Load&& load) {
  try {
    load();
  } catch (const nlohmann::json::exception& e) {
    fail(file, ": ", part, " has a value of the wrong JSON type (", e.what(), ")");
  }
}

// An id that a post-processor adds: a non-negative 32-bit integer.
int32_t post_processor_id(const nlohmann::json& id, std::string_view where) {
  M2_CHECK(id.is_number_integer() && (id.is_number_unsigned() || id.get<int64_t>() >= 0) &&
               id.get<uint64_t>() < (uint64_t{1} << 31),
           "tokenizer.json: post_processor ", where, " id ", id.dump(),
           " is not a non-negative 32-bit integer");
  return static_cast<int32_t>(id.get<int64_t>());
}

}  // namespace

Tokenizer Tokenizer::load(const std::string& dir) {
  const std::string json_path = dir + "/tokenizer.json";
  M2_CHECK(file_exists(json_path), "no tokenizer.json in ", dir);
  const std::string json_text = read_text_file(json_path);
  const std::string config_path = dir + "/tokenizer_config.json";
  const std::string config_text = file_exists(config_path) ? read_text_file(config_path) : "";
  try {
    return from_json_text(json_text, config_text);
  } catch (const Error& e) {
    fail(dir, ": ", e.what());
  }
}

Tokenizer Tokenizer::from_json_text(std::string_view tokenizer_json,
                                    std::string_view tokenizer_config_json) {
  Tokenizer tokenizer;
  tokenizer.build(parse_json(tokenizer_json, "tokenizer.json"));
  if (!tokenizer_config_json.empty()) {
    const nlohmann::json config = parse_json(tokenizer_config_json, "tokenizer_config.json");
    load_part("tokenizer_config.json", "the file", [&] { tokenizer.read_config(config); });
  }
  return tokenizer;
}

void Tokenizer::build(const nlohmann::json& spec) {
  M2_CHECK(spec.is_object(), "tokenizer.json must be a JSON object");
  if (spec.contains("version")) {
    M2_CHECK(spec["version"] == "1.0", "tokenizer.json: unknown version ", spec["version"].dump());
  }
  M2_CHECK(!spec.contains("truncation") || spec["truncation"].is_null(),
           "tokenizer.json: truncation is not supported");
  M2_CHECK(spec.contains("model"), "tokenizer.json has no model");
  const auto null_json = nlohmann::json();
  load_part("tokenizer.json", "normalizer",
            [&] { normalizer_ = Normalizer::from_json(spec.value("normalizer", null_json)); });
  load_part("tokenizer.json", "pre_tokenizer", [&] {
    pre_tokenizer_ = PreTokenizer::from_json(spec.value("pre_tokenizer", null_json));
  });
  load_part("tokenizer.json", "model", [&] { model_ = BpeModel::from_json(spec["model"]); });
  load_part("tokenizer.json", "post_processor",
            [&] { build_post_processor(spec.value("post_processor", null_json)); });
  load_part("tokenizer.json", "decoder", [&] { build_decoder(spec.value("decoder", null_json)); });
  load_part("tokenizer.json", "added_tokens", [&] { build_added_tokens(spec); });
}

void Tokenizer::build_added_tokens(const nlohmann::json& spec) {
  const bool has_normalizer = spec.contains("normalizer") && !spec["normalizer"].is_null();

  // Added tokens get ids the way Hugging Face's AddedVocabulary::add_tokens assigns them (the
  // "id" written in the file is only checked): existing content keeps its id, else the model's
  // id for that string, else the next id after the model vocabulary.
  std::unordered_map<int32_t, AddedToken> by_id;
  std::unordered_map<int32_t, std::string> normalized_content;
  std::unordered_set<std::string> special_contents;
  int32_t next_id = static_cast<int32_t>(model_.vocab_entries());
  if (spec.contains("added_tokens") && !spec["added_tokens"].is_null()) {
    M2_CHECK(spec["added_tokens"].is_array(), "tokenizer.json: added_tokens must be a list");
    for (const auto& entry : spec["added_tokens"]) {
      M2_CHECK(entry.is_object() && entry.contains("content") && entry["content"].is_string(),
               "tokenizer.json: an added token has no content");
      AddedToken token;
      token.content = entry["content"].get<std::string>();
      token.single_word = json_bool(entry, "single_word", false);
      token.lstrip = json_bool(entry, "lstrip", false);
      token.rstrip = json_bool(entry, "rstrip", false);
      token.normalized = json_bool(entry, "normalized", true);
      token.special = json_bool(entry, "special", false);
      if (token.content.empty()) continue;
      const auto existing = added_by_content_.find(token.content);
      int32_t id = -1;
      if (existing != added_by_content_.end()) {
        id = existing->second;
      } else if (const int32_t model_id = model_.token_to_id(token.content); model_id >= 0) {
        id = model_id;
      } else {
        id = next_id++;
      }
      if (entry.contains("id") && entry["id"].is_number_integer() &&
          entry["id"].get<int64_t>() != id) {
        log_warn(str_cat("tokenizer.json: added token '", token.content, "' has id ",
                         entry["id"].get<int64_t>(), " in the file but gets id ", id,
                         " (as in Hugging Face tokenizers)"));
      }
      token.id = id;
      if (token.normalized && has_normalizer) {
        const std::string normed = normalizer_.normalize(token.content);
        if (normed != token.content) normalized_content[id] = normed;
      }
      added_by_content_[token.content] = id;
      if (token.special) special_contents.insert(token.content);
      by_id[id] = token;
    }
  }
  added_tokens_.clear();
  for (auto& [id, token] : by_id) added_tokens_.push_back(token);
  std::sort(added_tokens_.begin(), added_tokens_.end(),
            [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });

  std::vector<std::string> raw_patterns;
  std::vector<const AddedToken*> raw_tokens;
  std::vector<std::string> normalized_patterns;
  std::vector<const AddedToken*> normalized_tokens;
  for (const AddedToken& token : added_tokens_) {
    if (token.normalized) {
      const auto it = normalized_content.find(token.id);
      normalized_patterns.push_back(it != normalized_content.end() ? it->second : token.content);
      normalized_tokens.push_back(&token);
    } else {
      raw_patterns.push_back(token.content);
      raw_tokens.push_back(&token);
    }
  }
  raw_matcher_ = AddedTokenMatcher(raw_patterns, raw_tokens);
  normalized_matcher_ = AddedTokenMatcher(normalized_patterns, normalized_tokens);

  // Decoding tables: what each id's token string decodes to, and whether it is special.
  int32_t size = model_.max_id() + 1;
  for (const AddedToken& token : added_tokens_) size = std::max(size, token.id + 1);
  decoded_.assign(static_cast<size_t>(size), std::string());
  present_.assign(static_cast<size_t>(size), 0);
  special_.assign(static_cast<size_t>(size), 0);
  for (int32_t id = 0; id < size; ++id) {
    std::string token;
    if (const auto it = by_id.find(id); it != by_id.end()) {
      const auto normed = normalized_content.find(id);
      token = normed != normalized_content.end() ? normed->second : it->second.content;
    } else if (const std::string* model_token = model_.id_to_token(id)) {
      token = *model_token;
    } else {
      continue;
    }
    present_[id] = 1;
    special_[id] = special_contents.count(token) ? 1 : 0;
    // ByteLevel decoder: a token wholly in the byte alphabet stands for those bytes; any other
    // token (e.g. an added token with characters outside it) decodes to its own UTF-8.
    if (!append_bytes_from_byte_level(token, decoded_[id])) decoded_[id] = token;
  }
}

void Tokenizer::build_post_processor(const nlohmann::json& spec) {
  if (spec.is_null()) return;
  M2_CHECK(spec.is_object() && spec.contains("type") && spec["type"].is_string(),
           "tokenizer.json: post_processor has no type");
  const std::string type = spec["type"].get<std::string>();
  if (type == "Sequence") {
    M2_CHECK(spec.contains("processors") && spec["processors"].is_array(),
             "tokenizer.json: Sequence post_processor without processors");
    for (const auto& child : spec["processors"]) build_post_processor(child);
    return;
  }
  if (type == "ByteLevel") return;  // adjusts offsets only
  PostStep step;
  if (type == "TemplateProcessing") {
    M2_CHECK(spec.contains("single") && spec["single"].is_array(),
             "tokenizer.json: TemplateProcessing without a single template");
    const auto& specials = spec.value("special_tokens", nlohmann::json::object());
    bool seen_sequence = false;
    for (const auto& piece : spec["single"]) {
      if (piece.contains("Sequence")) {
        M2_CHECK(!seen_sequence,
                 "tokenizer.json: TemplateProcessing single template has two sequences");
        seen_sequence = true;
      } else if (piece.contains("SpecialToken")) {
        const auto& special = piece["SpecialToken"];
        M2_CHECK(special.is_object() && special.contains("id") && special["id"].is_string(),
                 "tokenizer.json: TemplateProcessing SpecialToken without a string id");
        const std::string name = special["id"].get<std::string>();
        M2_CHECK(specials.is_object() && specials.contains(name) && specials[name].is_object() &&
                     specials[name].contains("ids") && specials[name]["ids"].is_array(),
                 "tokenizer.json: TemplateProcessing special token '", name, "' is not defined");
        auto& target = seen_sequence ? step.after : step.before;
        for (const auto& id : specials[name]["ids"]) {
          target.push_back(post_processor_id(id, str_cat("special token '", name, "'")));
        }
      } else {
        fail("tokenizer.json: TemplateProcessing template piece not understood: ", piece.dump());
      }
    }
    M2_CHECK(seen_sequence, "tokenizer.json: TemplateProcessing single template has no sequence");
  } else if (type == "BertProcessing" || type == "RobertaProcessing") {
    // cls and sep are [token, id] pairs.
    for (const char* key : {"cls", "sep"}) {
      M2_CHECK(spec.contains(key) && spec[key].is_array() && spec[key].size() == 2 &&
                   spec[key][0].is_string(),
               "tokenizer.json: ", type, " needs ", key, " as a [token, id] pair");
    }
    step.before.push_back(post_processor_id(spec["cls"][1], "cls"));
    step.after.push_back(post_processor_id(spec["sep"][1], "sep"));
  } else {
    fail("tokenizer.json: unsupported post_processor type '", type, "'");
  }
  post_steps_.push_back(std::move(step));
}

void Tokenizer::build_decoder(const nlohmann::json& spec) {
  M2_CHECK(!spec.is_null(),
           "tokenizer.json: a tokenizer without a decoder is not supported (need ByteLevel)");
  M2_CHECK(spec.is_object() && spec.contains("type") && spec["type"].is_string(),
           "tokenizer.json: decoder has no type");
  const std::string type = spec["type"].get<std::string>();
  if (type == "Sequence") {
    M2_CHECK(
        spec.contains("decoders") && spec["decoders"].is_array() && spec["decoders"].size() == 1,
        "tokenizer.json: only a Sequence decoder holding one ByteLevel decoder is supported");
    build_decoder(spec["decoders"][0]);
    return;
  }
  M2_CHECK(type == "ByteLevel", "tokenizer.json: unsupported decoder type '", type,
           "' (only ByteLevel is supported)");
}

void Tokenizer::read_config(const nlohmann::json& config) {
  M2_CHECK(config.is_object(), "tokenizer_config.json must be a JSON object");
  config_.bos_token = config_token(config, "bos_token");
  config_.eos_token = config_token(config, "eos_token");
  config_.pad_token = config_token(config, "pad_token");
  if (config_.bos_token) config_.bos_id = token_to_id(*config_.bos_token);
  if (config_.eos_token) config_.eos_id = token_to_id(*config_.eos_token);
  if (config_.pad_token) config_.pad_id = token_to_id(*config_.pad_token);
  if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean()) {
    config_.add_bos_token = config["add_bos_token"].get<bool>();
  }
  if (config.contains("add_eos_token") && config["add_eos_token"].is_boolean()) {
    config_.add_eos_token = config["add_eos_token"].get<bool>();
  }
  if (config.contains("chat_template")) {
    const auto& chat_template = config["chat_template"];
    if (chat_template.is_string()) {
      config_.chat_template = chat_template.get<std::string>();
    } else if (chat_template.is_array()) {
      for (const auto& entry : chat_template) {
        if (entry.is_object() && entry.value("name", std::string()) == "default" &&
            entry.contains("template") && entry["template"].is_string()) {
          config_.chat_template = entry["template"].get<std::string>();
        }
      }
    }
  }
}

// ---- Encoding ----

namespace {

class ModelSink : public PieceSink {
 public:
  ModelSink(const BpeModel& model, bool byte_level, BpeWorkspace& workspace,
            std::vector<int32_t>& ids)
      : model_(model), byte_level_(byte_level), workspace_(workspace), ids_(ids) {}
  void piece(std::string_view text) override {
    model_.tokenize(text, byte_level_, workspace_, ids_);
  }

 private:
  const BpeModel& model_;
  bool byte_level_;
  BpeWorkspace& workspace_;
  std::vector<int32_t>& ids_;
};

}  // namespace

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  encode_into(text, add_special_tokens, ids);
  return ids;
}

void Tokenizer::encode_into(std::string_view text, bool add_special_tokens,
                            std::vector<int32_t>& ids) const {
  M2_CHECK(text.size() <= kMaxEncodeBytes, "cannot tokenize a text of ", text.size(),
           " bytes (the limit is ", kMaxEncodeBytes, " bytes per call)");
  const size_t bad = find_invalid_utf8(text);
  M2_CHECK(bad == text.size(), "cannot tokenize text that is not valid UTF-8 (byte offset ", bad,
           ")");
  ids.clear();
  WorkspaceLease lease(*this);
  Workspace& ws = lease.get();
  raw_matcher_.split(text, ws.raw_segments);
  for (const TextSegment& segment : ws.raw_segments) {
    if (segment.id >= 0) {
      ids.push_back(segment.id);
    } else {
      encode_normalized(text.substr(segment.start, segment.end - segment.start), ws, ids);
    }
  }
  if (add_special_tokens) {
    for (const PostStep& step : post_steps_) {
      ids.insert(ids.begin(), step.before.begin(), step.before.end());
      ids.insert(ids.end(), step.after.begin(), step.after.end());
    }
  }
}

void Tokenizer::encode_normalized(std::string_view text, Workspace& ws,
                                  std::vector<int32_t>& ids) const {
  if (text.empty()) return;
  std::string normalized;
  if (!normalizer_.empty()) {
    normalized = normalizer_.normalize(text);
    text = normalized;
  }
  if (normalized_matcher_.empty()) {
    encode_plain(text, ws, ids);
    return;
  }
  normalized_matcher_.split(text, ws.normalized_segments);
  for (const TextSegment& segment : ws.normalized_segments) {
    if (segment.id >= 0) {
      ids.push_back(segment.id);
    } else {
      encode_plain(text.substr(segment.start, segment.end - segment.start), ws, ids);
    }
  }
}

void Tokenizer::encode_plain(std::string_view text, Workspace& ws,
                             std::vector<int32_t>& ids) const {
  if (text.empty()) return;
  ModelSink sink(model_, pre_tokenizer_.ends_with_byte_level(), ws.bpe, ids);
  pre_tokenizer_.run(text, ws.pre, sink);
}

// ---- Decoding ----

bool Tokenizer::has_id(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < present_.size() && present_[id] != 0;
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
  M2_CHECK(has_id(id), "token id ", id, " is not in the vocabulary (size ", vocab_size(), ")");
  return decoded_[id];
}

bool Tokenizer::is_special(int32_t id) const {
  return has_id(id) && special_[id] != 0;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  // added_tokens_ is sorted by id.
  const auto it = std::lower_bound(added_tokens_.begin(), added_tokens_.end(), id,
                                   [](const AddedToken& t, int32_t value) { return t.id < value; });
  if (it != added_tokens_.end() && it->id == id) return it->content;
  const std::string* token = model_.id_to_token(id);
  return token != nullptr ? *token : std::string();
}

int32_t Tokenizer::token_to_id(std::string_view token) const {
  const auto it = added_by_content_.find(std::string(token));
  if (it != added_by_content_.end()) return it->second;
  return model_.token_to_id(token);
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  for (int32_t id : ids) {
    const std::string_view token = token_bytes(id);
    if (skip_special_tokens && special_[id]) continue;
    bytes.append(token);
  }
  return utf8_lossy(bytes);
}

std::string StreamingDecoder::feed(int32_t id) {
  const std::string_view bytes = tokenizer_->token_bytes(id);
  if (skip_special_tokens_ && tokenizer_->is_special(id)) return {};
  pending_.append(bytes);
  std::string out;
  const size_t consumed = append_utf8_lossy(pending_, false, out);
  pending_.erase(0, consumed);
  return out;
}

std::string StreamingDecoder::flush() {
  std::string out;
  append_utf8_lossy(pending_, true, out);
  pending_.clear();
  return out;
}

}  // namespace m2fp4
