// open_disk, create_disk and probe_format: the format registry and backing-chain rules
// (relative to the child's folder, depth-limited, loops refused).
#include <sys/stat.h>

#include <algorithm>
#include <set>
#include <utility>
#include <vector>

#include "common/error.h"
#include "disk/driver.h"

namespace berth::disk {

namespace {

std::vector<FormatDriver>& registry() {
  static std::vector<FormatDriver> drivers;
  return drivers;
}

const FormatDriver& driver_for(Format format) {
  for (const auto& d : registry()) {
    if (d.format == format) return d;
  }
  throw Error("DISK_UNSUPPORTED", std::string("this build of Berth has no ") + format_name(format) + " driver");
}

const FormatDriver& probe_driver(const File& file) {
  std::vector<const FormatDriver*> ordered;
  for (const auto& d : registry()) ordered.push_back(&d);
  std::sort(ordered.begin(), ordered.end(), [](auto* a, auto* b) { return a->probe_order < b->probe_order; });
  for (const auto* d : ordered) {
    if (d->probe && d->probe(file)) return *d;
  }
  throw Error("DISK_UNKNOWN_FORMAT", file.path() + " is not a disk image Berth can read");
}

// State shared along one chain being opened.
struct ChainContext {
  uint32_t max_depth;
  std::set<std::pair<dev_t, ino_t>> seen;
};

std::unique_ptr<BlockDevice> open_in_chain(const std::string& path, const OpenOptions& options,
                                           ChainContext& chain, uint32_t depth) {
  if (depth > chain.max_depth) {
    throw Error("DISK_CHAIN_TOO_DEEP", path + " is more than " + std::to_string(chain.max_depth) +
                                           " backing files deep; merge some of the differencing disks");
  }
  const File::Mode mode = options.read_only ? File::Mode::kReadOnly : File::Mode::kReadWrite;
  // Probes read a few unaligned bytes, which O_DIRECT refuses: probe through a buffered
  // descriptor and reopen for direct I/O afterwards.
  File file(path, mode, false);
  struct stat st;
  if (::fstat(file.fd(), &st) == 0 && !chain.seen.insert({st.st_dev, st.st_ino}).second) {
    throw Error("DISK_BACKING_LOOP", path + " appears twice in its own backing chain (a loop); reconnect the "
                                            "differencing disk to its real parent");
  }
  const FormatDriver& driver = probe_driver(file);
  if (options.direct && driver.direct_io) {
    file = File(path, mode, true);
    struct stat again;
    if (::fstat(file.fd(), &again) != 0 || again.st_dev != st.st_dev || again.st_ino != st.st_ino) {
      throw Error("DISK_OPEN", path + " was replaced while it was being opened; try again");
    }
  }
  BackingOpener backing = [&, path, depth](const std::string& recorded, const std::string&) {
    OpenOptions parent = options;
    parent.read_only = true;  // a parent is never written through its child
    return open_in_chain(resolve_backing_path(path, recorded), parent, chain, depth + 1);
  };
  if (!options.open_backing) backing = nullptr;
  return driver.open(std::move(file), options, backing);
}

}  // namespace

bool register_driver(const FormatDriver& driver) {
  registry().push_back(driver);
  return true;
}

std::string resolve_backing_path(const std::string& child_path, const std::string& recorded_path) {
  if (recorded_path.empty() || recorded_path[0] == '/') return recorded_path;
  auto slash = child_path.rfind('/');
  if (slash == std::string::npos) return recorded_path;
  return child_path.substr(0, slash + 1) + recorded_path;
}

std::unique_ptr<BlockDevice> open_disk(const std::string& path, const OpenOptions& options) {
  ChainContext chain{options.max_chain_depth, {}};
  return open_in_chain(path, options, chain, 0);
}

void create_disk(const std::string& path, const CreateOptions& options) {
  const FormatDriver& driver = driver_for(options.format);
  if (!driver.create) {
    throw Error("DISK_UNSUPPORTED", std::string("Berth cannot create ") + format_name(options.format) + " images");
  }
  driver.create(path, options);
}

Format probe_format(const std::string& path) {
  File file(path, File::Mode::kReadOnly);
  return probe_driver(file).format;
}

}  // namespace berth::disk
