#include "machine/state_file.h"

#include <fcntl.h>
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

StateFileWriteStats write_state_file(const std::string& path, std::span<const uint8_t> records,
                                     const vmm::GuestMemory& memory) {
  if (records.size() > kMaxStateRecordsBytes) {
    throw Error("STATE_IO", "the VM's device state is " + std::to_string(records.size()) + " bytes, over the " +
                                std::to_string(kMaxStateRecordsBytes) + "-byte limit of a state file");
  }
  Header h;
  h.records_bytes = records.size();
  h.records_crc = crc(records);
  h.memory_offset = align_up(kStateHeaderBytes + records.size(), kStateMemoryAlign);
  h.memory_bytes = memory.size();

  std::random_device rd;
  std::string tmp = path + ".partial-" + std::to_string(rd());
  int raw = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (raw < 0) throw SystemError("STATE_IO", "cannot create " + tmp, errno);
  UniqueFd fd(raw);
  StateFileWriteStats stats;
  try {
    if (ftruncate(fd.get(), static_cast<off_t>(h.memory_offset + h.memory_bytes)) != 0) {
      throw SystemError("STATE_IO", "cannot size " + tmp, errno);
    }
    write_all(fd.get(), records, h.records_offset);
    stats.memory_bytes_written = vmm::write_memory_image(memory, fd.get(), h.memory_offset).bytes_written;
    // The header last: a file cut short by a crash has no valid header.
    write_all(fd.get(), encode(h), 0);
    if (fsync(fd.get()) != 0) throw SystemError("STATE_IO", "cannot sync " + tmp, errno);
    struct stat st{};
    if (fstat(fd.get(), &st) == 0) stats.file_bytes = static_cast<uint64_t>(st.st_blocks) * 512;
    if (rename(tmp.c_str(), path.c_str()) != 0) throw SystemError("STATE_IO", "cannot rename the saved state to " + path, errno);
  } catch (...) {
    unlink(tmp.c_str());
    throw;
  }
  int dir = open(folder_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    fsync(dir);
    close(dir);
  }
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
