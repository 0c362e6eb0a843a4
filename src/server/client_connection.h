// Whether the client of a request is still connected, for handlers that answer only at the end
// (non-streaming completions): cpp-httplib 0.11 gives a handler neither its socket nor a
// connection-closed check, so the socket is found by its address pair (the connection's file
// descriptor stays open and owned by the handler's thread until the handler returns).
#pragma once

#include <optional>

#include <httplib.h>

namespace m2fp4::server {

class ClientConnection {
 public:
  // The open TCP socket whose local and peer addresses are the request's; none when not found
  // (then nothing can be told and the caller carries on as if connected).
  static std::optional<ClientConnection> find(const httplib::Request& req);

  // True once the peer has closed or reset the connection (or shut down its sending side, which
  // no HTTP/1.1 client does while it waits for a response). Never blocks, never consumes data.
  bool closed() const;

  int fd() const { return fd_; }

 private:
  explicit ClientConnection(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace m2fp4::server
