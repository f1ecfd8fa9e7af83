#include "worker/machine_spec.h"

#include <arpa/inet.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <initializer_list>

#include "common/error.h"
#include "devices/net/nic_check.h"

namespace berth::worker {

namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw Error("INVALID_CONFIG", "run/machine.json: " + where + " " + what);
}

// Refuses keys the schema does not have, so a misspelt field is not silently ignored.
void only_keys(const json& obj, const std::string& where, std::initializer_list<std::string_view> keys) {
  if (!obj.is_object()) bad(where, "must be an object");
  for (const auto& [key, value] : obj.items()) {
    bool known = false;
    for (std::string_view k : keys) known = known || k == key;
    if (!known) bad(where, "has an unknown field '" + key + "'");
  }
}

const json& field(const json& obj, const std::string& where, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end()) bad(where + "." + key, "is required");
  return *it;
}

std::string text(const json& obj, const std::string& where, const char* key, bool optional = false) {
  auto it = obj.find(key);
  if (it == obj.end() && optional) return "";
  const json& v = field(obj, where, key);
  if (!v.is_string()) bad(where + "." + key, "must be a string");
  std::string s = v.get<std::string>();
  if (s.find('\0') != std::string::npos) bad(where + "." + key, "must not contain NUL characters");
  return s;
}

bool flag(const json& obj, const std::string& where, const char* key) {
  const json& v = field(obj, where, key);
  if (!v.is_boolean()) bad(where + "." + key, "must be true or false");
  return v.get<bool>();
}

uint64_t number(const json& obj, const std::string& where, const char* key, uint64_t min, uint64_t max) {
  const json& v = field(obj, where, key);
  if (!v.is_number_unsigned() || v.get<uint64_t>() < min || v.get<uint64_t>() > max) {
    bad(where + "." + key, "must be a whole number from " + std::to_string(min) + " to " + std::to_string(max));
  }
  return v.get<uint64_t>();
}

const json& list(const json& obj, const std::string& where, const char* key) {
  const json& v = field(obj, where, key);
  if (!v.is_array()) bad(where + "." + key, "must be an array");
  return v;
}

machine::DiskConfig parse_disk(const json& d, const std::string& where) {
  only_keys(d, where, {"path", "readOnly", "format", "serial", "controller"});
  machine::DiskConfig disk;
  disk.path = text(d, where, "path");
  if (disk.path.empty()) bad(where + ".path", "must not be empty");
  disk.read_only = flag(d, where, "readOnly");
  disk.format = text(d, where, "format", true);
  disk.serial = text(d, where, "serial");
  if (disk.serial.size() > 20) bad(where + ".serial", "must be at most 20 characters");
  const std::string controller = text(d, where, "controller", true);
  if (controller != "" && controller != "virtio" && controller != "scsi") bad(where + ".controller", "must be 'virtio' or 'scsi'");
  disk.scsi = controller == "scsi";
  return disk;
}

devices::net::NicConfig parse_nic(const json& n, const std::string& where) {
  using devices::net::NicConfig;
  only_keys(n, where, {"kind", "mac", "restricted", "portForwards", "tapName", "bridge"});
  NicConfig nic;
  std::string kind = text(n, where, "kind");
  if (kind == "nat") nic.kind = NicConfig::Kind::kNat;
  else if (kind == "tap") nic.kind = NicConfig::Kind::kTap;
  else bad(where + ".kind", "must be 'nat' or 'tap'");
  std::string mac = text(n, where, "mac");
  if (!devices::net::parse_mac(mac, nic.mac)) bad(where + ".mac", "must look like 52:54:00:12:34:56, not '" + mac + "'");
  nic.restricted = flag(n, where, "restricted");
  nic.tap_name = text(n, where, "tapName", true);
  nic.bridge = text(n, where, "bridge", true);
  const json& forwards = list(n, where, "portForwards");
  for (size_t i = 0; i < forwards.size(); ++i) {
    std::string at = where + ".portForwards[" + std::to_string(i) + "]";
    const json& f = forwards[i];
    only_keys(f, at, {"protocol", "hostAddress", "hostPort", "guestPort"});
    devices::net::PortForward pf;
    std::string protocol = text(f, at, "protocol");
    if (protocol != "tcp" && protocol != "udp") bad(at + ".protocol", "must be 'tcp' or 'udp'");
    pf.udp = protocol == "udp";
    pf.host_address = text(f, at, "hostAddress");
    in_addr a{};
    if (inet_pton(AF_INET, pf.host_address.c_str(), &a) != 1) bad(at + ".hostAddress", "must be an IPv4 address");
    pf.host_port = static_cast<uint16_t>(number(f, at, "hostPort", 1, 65535));
    pf.guest_port = static_cast<uint16_t>(number(f, at, "guestPort", 1, 65535));
    nic.port_forwards.push_back(std::move(pf));
  }
  if (auto problem = devices::net::nic_problem(nic)) bad(where, *problem);
  return nic;
}

}  // namespace

WorkerSpec parse_machine_spec(std::string_view json_text) {
  json v = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (v.is_discarded()) throw Error("INVALID_CONFIG", "run/machine.json is not valid JSON");
  only_keys(v, "(spec)", {"specVersion", "vmId", "name", "memoryMiB", "vcpus", "boot", "testExitPort", "com1", "disks", "nics", "dvds", "restoreFrom"});
  uint64_t version = number(v, "(spec)", "specVersion", 0, UINT32_MAX);
  if (version != kWorkerSpecVersion) {
    throw Error("UNSUPPORTED_VERSION", "run/machine.json is version " + std::to_string(version) +
                                           ", this worker reads version " + std::to_string(kWorkerSpecVersion) +
                                           "; start the VM with the Berth this worker came with");
  }
  WorkerSpec spec;
  spec.vm_id = text(v, "(spec)", "vmId");
  spec.name = text(v, "(spec)", "name");
  spec.console = flag(v, "(spec)", "com1");
  auto& m = spec.machine;
  m.memory_bytes = number(v, "(spec)", "memoryMiB", 2, uint64_t{1} << 24) << 20;
  m.vcpu_count = static_cast<uint32_t>(number(v, "(spec)", "vcpus", 1, 1024));
  const json& boot = field(v, "(spec)", "boot");
  if (boot.is_object() && boot.contains("firmware")) {
    only_keys(boot, "boot", {"firmware"});
    const json& fw = field(boot, "boot", "firmware");
    only_keys(fw, "boot.firmware", {"kind", "codePath", "varsPath", "bootOrder", "display", "displayRomPath"});
    const std::string kind = text(fw, "boot.firmware", "kind");
    if (kind != "uefi" && kind != "bios") bad("boot.firmware.kind", "must be 'uefi' or 'bios'");
    m.firmware.kind = kind == "uefi" ? machine::FirmwareKind::kUefi : machine::FirmwareKind::kBios;
    m.firmware.code_path = text(fw, "boot.firmware", "codePath");
    if (m.firmware.code_path.empty()) bad("boot.firmware.codePath", "must not be empty");
    if (m.firmware.kind == machine::FirmwareKind::kUefi) {
      m.firmware.vars_path = text(fw, "boot.firmware", "varsPath");
      if (m.firmware.vars_path.empty()) bad("boot.firmware.varsPath", "must not be empty");
    } else if (fw.contains("varsPath")) {
      bad("boot.firmware.varsPath", "is for UEFI only: a BIOS keeps its settings in CMOS");
    }
    if (fw.contains("bootOrder")) {
      using Device = machine::FirmwareConfig::BootDevice;
      const json& order = list(fw, "boot.firmware", "bootOrder");
      m.firmware.boot_order.clear();
      for (size_t i = 0; i < order.size(); ++i) {
        const std::string at = "boot.firmware.bootOrder[" + std::to_string(i) + "]";
        if (!order[i].is_string()) bad(at, "must be 'dvd', 'disk' or 'network'");
        const std::string d = order[i].get<std::string>();
        const Device dev = d == "dvd" ? Device::kDvd : d == "disk" ? Device::kDisk : d == "network" ? Device::kNetwork
                                                                                          : (bad(at, "must be 'dvd', 'disk' or 'network'"), Device::kDisk);
        for (Device seen : m.firmware.boot_order) {
          if (seen == dev) bad(at, "'" + d + "' is listed twice");
        }
        m.firmware.boot_order.push_back(dev);
      }
    }
    if (fw.contains("display")) m.firmware.display = flag(fw, "boot.firmware", "display");
    if (fw.contains("displayRomPath")) {
      if (!m.firmware.display) bad("boot.firmware.displayRomPath", "goes with display: true");
      m.firmware.display_rom_path = text(fw, "boot.firmware", "displayRomPath");
    }
  } else {
    only_keys(boot, "boot", {"kernelPath", "initrdPath", "cmdline"});
    m.boot.kernel_path = text(boot, "boot", "kernelPath");
    if (m.boot.kernel_path.empty()) bad("boot.kernelPath", "must not be empty");
    m.boot.initrd_path = text(boot, "boot", "initrdPath", true);
    m.boot.cmdline = text(boot, "boot", "cmdline");
  }
  m.boot.vcpu_count = m.vcpu_count;
  m.test_exit_port = flag(v, "(spec)", "testExitPort");
  m.restart_on_reset = true;
  const json& disks = list(v, "(spec)", "disks");
  for (size_t i = 0; i < disks.size(); ++i) {
    const std::string at = "disks[" + std::to_string(i) + "]";
    m.disks.push_back(parse_disk(disks[i], at));
    if (m.disks.back().scsi && m.firmware.kind == machine::FirmwareKind::kNone) {
      bad(at + ".controller", "SCSI disks sit on the SCSI controller of Generation 1 and 2 VMs; a VM that boots a kernel file has none");
    }
  }
  const json& nics = list(v, "(spec)", "nics");
  for (size_t i = 0; i < nics.size(); ++i) m.nics.push_back(parse_nic(nics[i], "nics[" + std::to_string(i) + "]"));
  if (v.contains("dvds")) {
    const json& dvds = list(v, "(spec)", "dvds");
    if (m.firmware.kind == machine::FirmwareKind::kNone && !dvds.empty()) {
      bad("dvds", "DVD drives sit on the SCSI controller of Generation 1 and 2 VMs; a VM that boots a kernel file has none");
    }
    for (size_t i = 0; i < dvds.size(); ++i) {
      const std::string at = "dvds[" + std::to_string(i) + "]";
      only_keys(dvds[i], at, {"path"});
      m.dvds.push_back({text(dvds[i], at, "path", true)});
    }
  }
  if (v.contains("restoreFrom")) {
    m.restore_from = text(v, "(spec)", "restoreFrom");
    if (m.restore_from.empty() || m.restore_from[0] != '/') bad("restoreFrom", "must be an absolute path");
  }
  return spec;
}

}  // namespace berth::worker
