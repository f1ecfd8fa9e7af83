#include "worker/run_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "common/unique_fd.h"

namespace berth::worker {

void log(const std::string& message) {
  std::string line = iso_now() + " [worker " + std::to_string(getpid()) + "] " + message + "\n";
  [[maybe_unused]] ssize_t n = write(STDOUT_FILENO, line.data(), line.size());
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  std::string tmp = path + "." + std::to_string(getpid()) + ".tmp";
  {
    UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd.valid()) throw SystemError("IO", "cannot write " + tmp, errno);
    size_t done = 0;
    while (done < contents.size()) {
      ssize_t n = write(fd.get(), contents.data() + done, contents.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw SystemError("IO", "cannot write " + tmp, errno);
      done += static_cast<size_t>(n);
    }
    if (fsync(fd.get()) != 0) throw SystemError("IO", "cannot sync " + tmp, errno);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) throw SystemError("IO", "cannot replace " + path, errno);
  std::string dir = path.substr(0, path.find_last_of('/'));
  UniqueFd dfd(open(dir.empty() ? "/" : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.valid()) fsync(dfd.get());
}

std::string iso_now() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm utc{};
  gmtime_r(&ts.tv_sec, &utc);
  char buf[40];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(buf + n, sizeof buf - n, ".%03ldZ", ts.tv_nsec / 1000000);
  return buf;
}

std::string process_start_ticks() {
  std::ifstream in("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return "";
  std::istringstream fields(stat.substr(paren + 2));
  std::string field;
  for (int i = 0; i <= 19 && fields >> field; ++i) {
    if (i == 19) return field;  // field 22 of the line: fields after "(comm)" start at 3
  }
  return "";
}

}  // namespace berth::worker
