#include "worker/control_server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/error.h"
#include "common/unix_socket.h"
#include "worker/protocol.h"

namespace berth::worker {

namespace {
// A console client that falls this far behind is dropped rather than grow the worker.
constexpr size_t kMaxClientBacklog = 8 * 1024 * 1024;

uint64_t now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}
}  // namespace

ControlServer::ControlServer(std::string path) : path_(std::move(path)) {
  listen_fd_ = listen_unix_socket(path_, "the control socket", 64, /*nonblocking=*/true);
}

ControlServer::~ControlServer() {
  if (listen_fd_.valid()) unlink(path_.c_str());
}

void ControlServer::poll_fds(std::vector<pollfd>& fds) const {
  if (listen_fd_.valid()) fds.push_back({listen_fd_.get(), POLLIN, 0});
  for (const auto& [id, c] : clients_) {
    fds.push_back({c.fd.get(), static_cast<short>((c.closing ? 0 : POLLIN) | (c.out.empty() ? 0 : POLLOUT)), 0});
  }
}

void ControlServer::service(const std::vector<pollfd>& fds, const LineHandler& on_line) {
  for (const pollfd& p : fds) {
    if (p.revents == 0) continue;
    if (listen_fd_.valid() && p.fd == listen_fd_.get()) {
      accept_clients();
      continue;
    }
    for (auto& [id, c] : clients_) {
      if (c.fd.get() != p.fd) continue;
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) read_from(c, on_line);
      if (c.fd.valid() && (p.revents & POLLOUT)) write_to(c);
      break;
    }
  }
  std::erase_if(clients_, [](const auto& kv) { return !kv.second.fd.valid(); });
}

void ControlServer::accept_clients() {
  for (;;) {
    int fd = accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;  // EAGAIN: no more; anything else: the client went away first
    Client c;
    c.id = next_id_++;
    c.fd = UniqueFd(fd);
    clients_.emplace(c.id, std::move(c));
  }
}

void ControlServer::read_from(Client& c, const LineHandler& on_line) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(c.fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {  // the client closed its end (or the socket failed)
      c.fd.reset();
      return;
    }
    c.in.append(buf, static_cast<size_t>(n));
    size_t start = 0;
    bool too_long = false;
    for (size_t nl; !c.closing && (nl = c.in.find('\n', start)) != std::string::npos; start = nl + 1) {
      std::string_view line(c.in.data() + start, nl - start);
      if (line.size() > kMaxLineBytes) {
        too_long = true;
        break;
      }
      if (line.find_first_not_of(" \t\r") != std::string_view::npos) on_line(c, line);
    }
    c.in.erase(0, start);
    if (too_long || c.in.size() > kMaxLineBytes) {  // however the bytes were split into reads
      send(c, error_response(std::nullopt, "PROTOCOL", "line longer than " + std::to_string(kMaxLineBytes) + " bytes"));
      c.closing = true;
      c.in.clear();
    }
    if (c.closing || !c.fd.valid()) break;
  }
  if (c.fd.valid()) write_to(c);
}

void ControlServer::write_to(Client& c) {
  while (!c.out.empty()) {
    ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n < 0) {
      c.fd.reset();
      return;
    }
    c.out.erase(0, static_cast<size_t>(n));
  }
  if (c.closing) c.fd.reset();
}

void ControlServer::send(Client& c, std::string_view line) {
  if (!c.fd.valid()) return;
  if (c.out.size() + line.size() > kMaxClientBacklog) {
    std::fprintf(stdout, "dropping control client %llu: it does not read its socket\n", static_cast<unsigned long long>(c.id));
    c.fd.reset();
    return;
  }
  c.out.append(line);
}

void ControlServer::for_each(const std::function<void(Client&)>& fn) {
  for (auto& [id, c] : clients_) {
    if (c.fd.valid()) fn(c);
  }
}

void ControlServer::shut_down(int timeout_ms) {
  if (listen_fd_.valid()) {
    unlink(path_.c_str());
    listen_fd_.reset();
  }
  uint64_t deadline = now_ms() + static_cast<uint64_t>(timeout_ms);
  for (auto& [id, c] : clients_) c.closing = true;
  for (;;) {
    std::erase_if(clients_, [](const auto& kv) { return !kv.second.fd.valid(); });
    std::vector<pollfd> fds;
    for (auto& [id, c] : clients_) {
      if (c.out.empty()) c.fd.reset();
      else fds.push_back({c.fd.get(), POLLOUT, 0});
    }
    std::erase_if(clients_, [](const auto& kv) { return !kv.second.fd.valid(); });
    uint64_t now = now_ms();
    if (clients_.empty() || now >= deadline) break;
    if (poll(fds.data(), fds.size(), static_cast<int>(deadline - now)) <= 0) break;
    for (auto& [id, c] : clients_) write_to(c);
  }
  clients_.clear();
}

}  // namespace berth::worker
