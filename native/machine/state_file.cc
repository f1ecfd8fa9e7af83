#include "machine/state_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "common/error.h"
#include "common/state_stream.h"
#include "vmm/memory_image.h"

namespace berth::machine {

namespace {

uint32_t crc(std::span<const uint8_t> bytes) {
  uLong c = crc32(0L, Z_NULL, 0);
  // zlib takes at most 4 GiB at a time; records are capped far below.
  return static_cast<uint32_t>(crc32(c, bytes.data(), static_cast<uInt>(bytes.size())));
}

[[noreturn]] void invalid(const std::string& what) { throw Error("STATE_INVALID", "saved state: " + what); }

struct Header {
  uint64_t records_offset = kStateHeaderBytes;
  uint64_t records_bytes = 0;
  uint32_t records_crc = 0;
  uint64_t memory_offset = 0;
  uint64_t memory_bytes = 0;
};

std::vector<uint8_t> encode(const Header& h) {
  state::Writer w;
  w.bytes(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(kStateFileMagic), sizeof kStateFileMagic));
  w.u32(kStateFileVersion);
  w.u64(h.records_offset);
  w.u64(h.records_bytes);
  w.u32(h.records_crc);
  w.u64(h.memory_offset);
  w.u64(h.memory_bytes);
  std::vector<uint8_t> out = w.take();
  uint32_t c = crc(out);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(c >> (8 * i)));
  out.resize(kStateHeaderBytes, 0);
  return out;
}

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

void write_all(int fd, std::span<const uint8_t> data, uint64_t at) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(at + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw SystemError("STATE_IO", "cannot write the saved state", n < 0 ? errno : ENOSPC);
    done += static_cast<size_t>(n);
  }
}

std::string folder_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

namespace {

// A state file being written: the temporary file beside `path`, removed unless committed.
class PartialStateFile {
 public:
  PartialStateFile(const std::string& path, std::span<const uint8_t> records, uint64_t memory_bytes) : path_(path) {
    if (records.size() > kMaxStateRecordsBytes) {
      throw Error("STATE_IO", "the VM's device state is " + std::to_string(records.size()) + " bytes, over the " +
                                  std::to_string(kMaxStateRecordsBytes) + "-byte limit of a state file");
    }
    Header h;
    h.records_bytes = records.size();
    h.records_crc = crc(records);
    h.memory_offset = align_up(kStateHeaderBytes + records.size(), kStateMemoryAlign);
    h.memory_bytes = memory_bytes;
    header_ = encode(h);
    memory_offset_ = h.memory_offset;
    std::random_device rd;
    tmp_ = path + ".partial-" + std::to_string(rd());
    int raw = open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (raw < 0) throw SystemError("STATE_IO", "cannot create " + tmp_, errno);
    fd_ = UniqueFd(raw);
    if (ftruncate(fd_.get(), static_cast<off_t>(h.memory_offset + h.memory_bytes)) != 0) {
      throw SystemError("STATE_IO", "cannot size " + tmp_, errno);
    }
    write_all(fd_.get(), records, h.records_offset);
  }
  ~PartialStateFile() {
    if (!committed_) unlink(tmp_.c_str());
  }

  int fd() const { return fd_.get(); }
  uint64_t memory_offset() const { return memory_offset_; }
  const std::vector<uint8_t>& header() const { return header_; }

  // The header last (a file cut short by a crash has no valid header), then sync and rename.
  uint64_t commit(bool header_written) {
    if (!header_written) write_all(fd_.get(), header_, 0);
    if (fsync(fd_.get()) != 0) throw SystemError("STATE_IO", "cannot sync " + tmp_, errno);
    struct stat st{};
    uint64_t allocated = fstat(fd_.get(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
    if (rename(tmp_.c_str(), path_.c_str()) != 0) {
      throw SystemError("STATE_IO", "cannot rename the saved state to " + path_, errno);
    }
    committed_ = true;
    int dir = open(folder_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
      fsync(dir);
      close(dir);
    }
    return allocated;
  }

 private:
  std::string path_, tmp_;
  UniqueFd fd_;
  std::vector<uint8_t> header_;
  uint64_t memory_offset_ = 0;
  bool committed_ = false;
};

// What the snapshot child reports through its pipe.
struct ChildReport {
  int error = 0;
  uint64_t bytes_written = 0;
};

}  // namespace

StateFileWriteStats write_state_file(const std::string& path, std::span<const uint8_t> records,
                                     const vmm::GuestMemory& memory) {
  PartialStateFile file(path, records, memory.size());
  StateFileWriteStats stats;
  stats.memory_bytes_written = vmm::write_memory_image(memory, file.fd(), file.memory_offset()).bytes_written;
  stats.file_bytes = file.commit(false);
  return stats;
}

StateFileWriteStats write_state_file_while_running(const std::string& path, std::span<const uint8_t> records,
                                                   const vmm::GuestMemory& memory, const std::function<void()>& run_on) {
  PartialStateFile file(path, records, memory.size());
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) throw SystemError("STATE_IO", "cannot create a pipe for the memory snapshot", errno);
  UniqueFd report_read(pipe_fds[0]), report_write(pipe_fds[1]);
  unsigned char resident[vmm::kMemoryImageScratchBytes];
  const uint8_t* header = file.header().data();
  size_t header_len = file.header().size();
  pid_t child = fork();
  if (child < 0) throw SystemError("STATE_IO", "cannot fork the memory snapshot writer", errno);
  if (child == 0) {
    // The child: system calls only (other threads of the parent may have held locks).
    ChildReport report;
    vmm::MemoryImageStats mem;
    report.error = vmm::write_memory_image_raw(memory, file.fd(), file.memory_offset(), resident, mem);
    report.bytes_written = mem.bytes_written;
    if (report.error == 0) {
      for (size_t done = 0; done < header_len;) {
        ssize_t n = pwrite(file.fd(), header + done, header_len - done, static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          report.error = n < 0 ? errno : ENOSPC;
          break;
        }
        done += static_cast<size_t>(n);
      }
    }
    (void)!write(report_write.get(), &report, sizeof report);
    _exit(report.error == 0 ? 0 : 1);
  }
  report_write.reset();
  auto reap = [&] {
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
  };
  try {
    run_on();
  } catch (...) {
    kill(child, SIGKILL);
    reap();
    throw;
  }
  ChildReport report;
  ssize_t got = 0;
  do {
    got = read(report_read.get(), &report, sizeof report);
  } while (got < 0 && errno == EINTR);
  int status = reap();
  if (got != static_cast<ssize_t>(sizeof report)) {
    throw Error("STATE_IO", "the memory snapshot writer ended without a report (status " + std::to_string(status) + ")");
  }
  if (report.error != 0) throw SystemError("STATE_IO", "cannot write the saved memory image", report.error);
  StateFileWriteStats stats;
  stats.memory_bytes_written = report.bytes_written;
  stats.file_bytes = file.commit(true);
  return stats;
}

std::vector<uint8_t> parse_state_header_and_records(std::span<const uint8_t> file, uint64_t file_size,
                                                    uint64_t* memory_offset, uint64_t* memory_bytes) {
  if (file.size() < kStateHeaderBytes) invalid("the file is shorter than its header (truncated)");
  if (std::memcmp(file.data(), kStateFileMagic, sizeof kStateFileMagic) != 0) {
    invalid("this is not a Berth saved-state file (wrong magic number)");
  }
  state::Reader r(file.subspan(0, kStateHeaderBytes), "header");
  r.bytes(sizeof kStateFileMagic, "magic");
  uint32_t version = r.u32("format version");
  if (version != kStateFileVersion) {
    throw Error("STATE_VERSION", "saved state: format version " + std::to_string(version) + "; this Berth reads version " +
                                     std::to_string(kStateFileVersion) + " (start the VM with the Berth that saved it, or delete the saved state)");
  }
  Header h;
  h.records_offset = r.u64("records offset");
  h.records_bytes = r.u64("records size");
  h.records_crc = r.u32("records checksum");
  h.memory_offset = r.u64("memory offset");
  h.memory_bytes = r.u64("memory size");
  size_t covered = sizeof kStateFileMagic + 4 + 8 + 8 + 4 + 8 + 8;
  uint32_t header_crc = r.u32("header checksum");
  if (header_crc != crc(file.subspan(0, covered))) invalid("the header's checksum does not match (the file is damaged)");
  if (h.records_offset != kStateHeaderBytes) invalid("the records do not follow the header");
  if (h.records_bytes > kMaxStateRecordsBytes) invalid("the records claim " + std::to_string(h.records_bytes) + " bytes, over the limit");
  if (h.memory_offset % kStateMemoryAlign != 0 || h.memory_offset < h.records_offset + h.records_bytes) {
    invalid("the memory image is not where it must be");
  }
  if (h.memory_bytes == 0 || h.memory_bytes % 4096 != 0 || h.memory_bytes > kMaxStateMemoryBytes) invalid("the memory size is invalid");
  if (file_size != h.memory_offset + h.memory_bytes) {
    invalid("the file is " + std::to_string(file_size) + " bytes, not " + std::to_string(h.memory_offset + h.memory_bytes) +
            " (truncated or damaged)");
  }
  if (file.size() < h.records_offset + h.records_bytes) invalid("the records are cut short (truncated)");
  auto records = file.subspan(h.records_offset, h.records_bytes);
  if (crc(records) != h.records_crc) invalid("the device and processor records fail their checksum (the file is damaged)");
  *memory_offset = h.memory_offset;
  *memory_bytes = h.memory_bytes;
  return std::vector<uint8_t>(records.begin(), records.end());
}

StateFile open_state_file(const std::string& path) {
  int raw = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw < 0) {
    if (errno == ENOENT) throw Error("STATE_INVALID", "saved state " + path + " does not exist");
    throw SystemError("STATE_IO", "cannot open the saved state " + path, errno);
  }
  StateFile sf;
  sf.fd = UniqueFd(raw);
  struct stat st{};
  if (fstat(raw, &st) != 0) throw SystemError("STATE_IO", "cannot read " + path, errno);
  if (!S_ISREG(st.st_mode)) invalid(path + " is not a regular file");
  uint64_t size = static_cast<uint64_t>(st.st_size);
  // Read the header, then as many record bytes as it claims (capped), never the memory.
  std::vector<uint8_t> head(std::min<uint64_t>(size, kStateHeaderBytes));
  if (pread(raw, head.data(), head.size(), 0) != static_cast<ssize_t>(head.size())) {
    throw SystemError("STATE_IO", "cannot read " + path, errno);
  }
  uint64_t records_bytes = 0;
  if (head.size() >= kStateHeaderBytes) {
    state::Reader r(head, "header");
    r.bytes(sizeof kStateFileMagic + 4 + 8, "fields");
    records_bytes = std::min(r.u64("records size"), kMaxStateRecordsBytes);
  }
  std::vector<uint8_t> front(std::min<uint64_t>(size, kStateHeaderBytes + records_bytes));
  size_t got = 0;
  while (got < front.size()) {
    ssize_t n = pread(raw, front.data() + got, front.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  front.resize(got);
  sf.records = parse_state_header_and_records(front, size, &sf.memory_offset, &sf.memory_bytes);
  return sf;
}

}  // namespace berth::machine
