// m2fp4 run: generate from a checkpoint on the command line, from token ids or from text
// rendered with the model's chat template (then the output goes through the reasoning and
// tool-call parsers, as the server does).
#include <cstdio>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/file.h"
#include "base/thread_pool.h"
#include "base/timer.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "engine/sampler.h"
#include "model/cuda/cuda_model.h"
#include "model/minimax_m2.h"
#include "text/chat/chat_template.h"
#include "text/parsers/output_parser.h"
#include "text/tokenizer/tokenizer.h"

namespace m2fp4::cli {
namespace {

std::vector<int32_t> parse_token_list(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    M2_CHECK(used > 0 && item.find_first_not_of(" \t", used) == std::string::npos && v >= 0 &&
                 v <= INT32_MAX,
             "--tokens: '", item, "' is not a token id");
    ids.push_back(static_cast<int32_t>(v));
  }
  M2_CHECK(!ids.empty(), "--tokens: no token ids given");
  return ids;
}

// A conversation from --prompt or --messages: the messages file is either an array of messages
// or an object {"messages": [...], "tools": [...]} (OpenAI request shape).
struct Conversation {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  nlohmann::ordered_json tools;  // null: no tools
};

Conversation read_conversation(const std::string& prompt, const std::string& messages_file) {
  Conversation conv;
  if (!prompt.empty()) {
    conv.messages.push_back({{"role", "user"}, {"content", prompt}});
    return conv;
  }
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(read_text_file(messages_file));
  } catch (const nlohmann::json::exception& e) {
    fail(messages_file, ": not valid JSON: ", e.what());
  }
  if (j.is_object() && j.contains("messages")) {
    conv.messages = j["messages"];
    if (j.contains("tools") && !j["tools"].is_null()) conv.tools = j["tools"];
  } else {
    conv.messages = j;
  }
  M2_CHECK(conv.messages.is_array() && !conv.messages.empty(), messages_file,
           ": expected a non-empty array of messages (or {\"messages\": [...]})");
  M2_CHECK(conv.tools.is_null() || conv.tools.is_array(), messages_file,
           ": \"tools\" must be an array");
  return conv;
}

}  // namespace

int cmd_run(int argc, char** argv) {
  CLI::App app("Generate from a MiniMax-M2 checkpoint.", "m2fp4 run");
  std::string model_dir, tokens_arg, prompt_arg, messages_file, dump_logits, load_mode = "read";
  std::string reasoning_parser = "minimax_m2";
  int64_t max_tokens = 16, ctx_size = 0, top_k = 0;
  float temperature = 0.0f, top_p = 1.0f;
  uint64_t seed = 0;
  int threads = 0;
  bool ignore_eos = false, json_out = false;
  app.add_option("--model", model_dir, "checkpoint folder")->required();
  auto* tokens_opt = app.add_option("--tokens", tokens_arg, "prompt token ids, comma-separated");
  auto* prompt_opt = app.add_option("--prompt", prompt_arg,
                                    "a user message, rendered with the model's chat template");
  auto* messages_opt =
      app.add_option("--messages", messages_file,
                     "JSON file: an array of messages, or {\"messages\": [...], \"tools\": [...]}");
  tokens_opt->excludes(prompt_opt)->excludes(messages_opt);
  prompt_opt->excludes(messages_opt);
  app.add_option("--max-tokens", max_tokens, "tokens to generate (0: prompt only)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--temperature", temperature, "sampling temperature (0: greedy)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--top-k", top_k, "sample from the k most likely tokens (0: off)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--top-p", top_p, "nucleus sampling mass (1: off)")->check(CLI::Range(0.0, 1.0));
  app.add_option("--seed", seed, "sampling seed");
  app.add_option("--dump-logits", dump_logits,
                 "write float32 logits of every prompt position, [n_prompt_tokens, vocab]");
  app.add_option("--threads", threads, "worker threads (0: all cores)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--ctx-size", ctx_size, "context length (0: max_position_embeddings)")
      ->check(CLI::NonNegativeNumber);
  RuntimeFlags runtime;
  add_runtime_flags(app, runtime);
  app.add_option("--load-mode", load_mode,
                 "read (weights in memory: page cache locked, else a copy) | mmap | copy (always "
                 "a copy in 2 MiB pages)")
      ->check(CLI::IsMember({"read", "mmap", "copy"}));
  app.add_option("--reasoning-parser", reasoning_parser,
                 "minimax_m2 | minimax_m2_append_think | none (text prompts only)")
      ->check(CLI::IsMember({"minimax_m2", "minimax_m2_append_think", "none"}));
  app.add_flag("--ignore-eos", ignore_eos, "keep generating past the end-of-sequence token");
  app.add_flag("--json", json_out, "text prompts: print the parsed message as JSON");
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  if (tokens_arg.empty() && prompt_arg.empty() && messages_file.empty()) {
    std::fprintf(stderr, "%s: error: one of --tokens, --prompt or --messages is required\n",
                 app.get_name().c_str());
    return kUsageError;
  }

  return run_guarded(app.get_name(), [&] {
    const bool text_mode = tokens_arg.empty();
    std::optional<Tokenizer> tokenizer;
    Conversation conv;
    std::vector<int32_t> prompt;
    if (text_mode) {
      conv = read_conversation(prompt_arg, messages_file);
      tokenizer.emplace(Tokenizer::load(model_dir));
      const ModelChatTemplate tmpl = load_model_chat_template(model_dir, !conv.tools.is_null());
      M2_CHECK(!tmpl.source.empty(), model_dir, " has no chat template");
      const std::string text =
          ChatTemplate(tmpl.source).render(conv.messages, conv.tools, true, tmpl.special_tokens);
      prompt = tokenizer->encode(text);
    } else {
      prompt = parse_token_list(tokens_arg);
    }

    Timer load_timer;
    auto model = LoadedModel::open(model_dir, parse_load_mode(load_mode));
    const ModelConfig& c = model->config;
    const double load_s = load_timer.seconds();
    int64_t eos = c.eos_token_id;
    if (tokenizer && tokenizer->config().eos_id >= 0) eos = tokenizer->config().eos_id;
    const int64_t context =
        ctx_size > 0 ? ctx_size
                     : (c.max_position_embeddings > 0 ? c.max_position_embeddings : 4096);
    M2_CHECK(static_cast<int64_t>(prompt.size()) <= context, "the prompt has ", prompt.size(),
             " tokens but the context is ", context);

    ThreadPool pool(threads);
    MiniMaxM2 net(c, model->weights, pool, ModelOptions{runtime.w4a4});
    KvCache cache(c, context, 0, parse_kv_cache_dtype(runtime.kv_cache_dtype));
    // --device cuda: the same forward on the GPU (its own device KV cache; `cache` stays empty).
    std::unique_ptr<CudaMiniMaxM2> gpu;
    if (runtime.device == "cuda") {
      gpu = std::make_unique<CudaMiniMaxM2>(
          c, model->weights, ModelOptions{runtime.w4a4},
          CudaModelOptions{context, parse_kv_cache_dtype(runtime.kv_cache_dtype), true});
    }
    auto forward = [&](const Batch& b, std::vector<float>& out) {
      if (gpu) {
        gpu->forward(b, out);
      } else {
        net.forward(b, cache, out);
      }
    };
    Sampler sampler(SamplingParams{temperature, top_k, top_p, seed});

    // Prefill: the whole prompt in one batch.
    Batch batch;
    const bool dump = !dump_logits.empty();
    for (size_t i = 0; i < prompt.size(); ++i) {
      batch.add(prompt[i], static_cast<int32_t>(i), 0, dump || i + 1 == prompt.size());
    }
    std::vector<float> logits;
    Timer prefill_timer;
    forward(batch, logits);
    const double prefill_s = prefill_timer.seconds();
    if (dump) {
      write_file_atomic(dump_logits, std::string_view(reinterpret_cast<const char*>(logits.data()),
                                                      logits.size() * sizeof(float)));
    }

    // Decode one token at a time; text prompts stream through the detokenizer and parsers.
    std::optional<StreamingDecoder> detok;
    std::optional<OutputParser> parser;
    std::vector<nlohmann::ordered_json> deltas;
    if (text_mode) {
      detok.emplace(*tokenizer, /*skip_special_tokens=*/true);
      parser.emplace(OutputParserOptions{parse_reasoning_mode(reasoning_parser), conv.tools});
    }
    std::vector<int32_t> generated;
    bool hit_eos = false;
    std::vector<float> step_logits(logits.end() - c.vocab_size, logits.end());
    int64_t position = static_cast<int64_t>(prompt.size());
    Timer decode_timer;
    while (static_cast<int64_t>(generated.size()) < max_tokens && position < context) {
      const int32_t next = sampler.sample(step_logits.data(), c.vocab_size);
      generated.push_back(next);
      if (!ignore_eos && eos >= 0 && next == eos) {
        hit_eos = true;
        break;
      }
      if (parser) {
        for (auto& d : parser->feed(detok->feed(next))) deltas.push_back(std::move(d));
      }
      if (static_cast<int64_t>(generated.size()) == max_tokens) break;
      batch.clear();
      batch.add(next, static_cast<int32_t>(position), 0, true);
      forward(batch, step_logits);
      ++position;
    }
    const double decode_s = decode_timer.seconds();
    std::fprintf(
        stderr, "load %.2f s | prefill %zu tokens %.1f tok/s | decode %zu tokens %.1f tok/s\n",
        load_s, prompt.size(), static_cast<double>(prompt.size()) / prefill_s, generated.size(),
        generated.size() > 1 ? static_cast<double>(generated.size() - 1) / decode_s : 0.0);

    std::string ids;
    for (size_t i = 0; i < generated.size(); ++i)
      ids += (i ? "," : "") + std::to_string(generated[i]);
    if (!text_mode) {
      std::printf("%s\n", ids.c_str());
      return 0;
    }
    for (auto& d : parser->feed(detok->flush())) deltas.push_back(std::move(d));
    for (auto& d : parser->finish(hit_eos ? "stop" : "length")) deltas.push_back(std::move(d));
    const nlohmann::ordered_json message = merge_deltas(deltas);
    if (json_out) {
      nlohmann::ordered_json out = {{"prompt_tokens", prompt.size()},
                                    {"token_ids", generated},
                                    {"finish_reason", parser->finish_reason()},
                                    {"message", message}};
      std::printf("%s\n", out.dump().c_str());
      return 0;
    }
    auto text_of = [&](const char* key) {
      return message.contains(key) && message[key].is_string() ? message[key].get<std::string>()
                                                               : std::string();
    };
    std::printf("[reasoning]\n%s\n[content]\n%s\n", text_of("reasoning_content").c_str(),
                text_of("content").c_str());
    if (message.contains("tool_calls")) {
      std::printf("[tool_calls]\n%s\n", message["tool_calls"].dump(2).c_str());
    }
    std::printf("[finish_reason] %s\n%s\n", parser->finish_reason().c_str(), ids.c_str());
    return 0;
  });
}

}  // namespace m2fp4::cli
