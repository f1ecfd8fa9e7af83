// The control socket's transport: a listening Unix socket (mode 0600) and its clients,
// each with a line buffer in and a bounded buffer out, all non-blocking and driven by the
// worker's poll loop. It knows lines, not what they mean.
#pragma once

#include <poll.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/unique_fd.h"

namespace berth::worker {

struct Client {
  uint64_t id = 0;
  UniqueFd fd;
  std::string in, out;
  bool greeted = false;   // said hello with the right protocol version
  bool attached = false;  // receives console output
  bool closing = false;   // closed once out is written
};

class ControlServer {
 public:
  using LineHandler = std::function<void(Client&, std::string_view line)>;

  // Binds path (replacing a stale socket), makes it 0600 and listens.
  explicit ControlServer(std::string path);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Adds the listener and every client to fds; service() then handles what poll found.
  void poll_fds(std::vector<pollfd>& fds) const;
  void service(const std::vector<pollfd>& fds, const LineHandler& on_line);

  // Queues a line; a client whose unread output passes the limit is dropped.
  void send(Client& client, std::string_view line);
  void for_each(const std::function<void(Client&)>& fn);
  // Stops accepting, removes the socket file, and writes what is queued for up to
  // timeout_ms before closing every client.
  void shut_down(int timeout_ms);

 private:
  void accept_clients();
  void read_from(Client& c, const LineHandler& on_line);
  void write_to(Client& c);

  std::string path_;
  UniqueFd listen_fd_;
  std::map<uint64_t, Client> clients_;
  uint64_t next_id_ = 1;
};

}  // namespace berth::worker
