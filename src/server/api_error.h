// Errors answered to a client as an OpenAI-style error object:
//   {"error": {"message": "...", "type": "invalid_request_error", "param": "max_tokens",
//              "code": 400}}
#pragma once

#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace m2fp4::server {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = {},
           std::string type = "invalid_request_error")
      : std::runtime_error(message),
        status_(status),
        param_(std::move(param)),
        type_(std::move(type)) {}

  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& type() const { return type_; }

 private:
  int status_;
  std::string param_;
  std::string type_;
};

// The response body for an error.
inline nlohmann::ordered_json error_body(int status, const std::string& message,
                                         const std::string& param = {},
                                         const std::string& type = "invalid_request_error") {
  nlohmann::ordered_json e = {{"message", message}, {"type", type}};
  e["param"] = param.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(param);
  e["code"] = status;
  return {{"error", e}};
}

inline nlohmann::ordered_json error_body(const ApiError& e) {
  return error_body(e.status(), e.what(), e.param(), e.type());
}

}  // namespace m2fp4::server
