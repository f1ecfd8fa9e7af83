// The worker's parsers of what arrives from outside: control-socket lines, the machine
// spec; and the pieces around them (base64, scrollback, lifecycle refusals).
#include <string>
#include <vector>

#include "tests/check.h"
#include "worker/base64.h"
#include "worker/lifecycle.h"
#include "worker/machine_spec.h"
#include "worker/protocol.h"
#include "worker/scrollback.h"

using namespace berth::worker;

namespace {
std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

const char* kSpec =
    R"({"specVersion":2,"vmId":"0b7e5f6e-4a57-4a55-9a38-2f1a4f3ae111","name":"web1","memoryMiB":64,"vcpus":2,)"
    R"("boot":{"kernelPath":"/k","initrdPath":"/i","cmdline":"console=ttyS0"},"testExitPort":false,"com1":true,)"
    R"("disks":[{"path":"disks/a.qcow2","readOnly":false,"serial":"berth-slot-0"},)"
    R"({"path":"/dev/loop3","readOnly":true,"format":"host-device","serial":"berth-slot-1"}],)"
    R"("nics":[{"kind":"nat","mac":"02:00:00:12:34:56","restricted":true,)"
    R"("portForwards":[{"protocol":"tcp","hostAddress":"127.0.0.1","hostPort":2222,"guestPort":22}]}]})";

std::string with(std::string spec, const std::string& from, const std::string& to) {
  size_t at = spec.find(from);
  CHECK(at != std::string::npos);
  return spec.replace(at, from.size(), to);
}
}  // namespace

TEST(base64_round_trips_every_length_and_refuses_non_canonical_text) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (size_t n = 0; n < 10; ++n) {
    auto in = bytes(all.substr(0, n));
    auto out = base64_decode(base64_encode(in));
    CHECK(out.has_value());
    CHECK(*out == in);
  }
  CHECK_STR(base64_encode(bytes("hello")), std::string("aGVsbG8="));
  CHECK(!base64_decode("aGVsbG8").has_value());   // not a multiple of 4
  CHECK(!base64_decode("aG=sbG8=").has_value());  // padding in the middle
  CHECK(!base64_decode("aGVs*G8=").has_value());
}

TEST(scrollback_keeps_the_newest_bytes_in_order) {
  Scrollback s(8);
  s.push(bytes("abc"));
  CHECK(s.contents() == bytes("abc"));
  s.push(bytes("defghij"));
  CHECK(s.contents() == bytes("cdefghij"));
  s.push(bytes("0123456789"));
  CHECK(s.contents() == bytes("23456789"));
  CHECK_EQ(s.size(), size_t{8});
  // Filled exactly, then wrapped a byte at a time.
  Scrollback t(8);
  CHECK(t.contents().empty());
  t.push(bytes("abcdefgh"));
  CHECK(t.contents() == bytes("abcdefgh"));
  t.push(bytes("ij"));
  CHECK(t.contents() == bytes("cdefghij"));
  t.push(bytes("k"));
  CHECK(t.contents() == bytes("defghijk"));
  t.push(bytes("lmnopqrs"));
  CHECK(t.contents() == bytes("lmnopqrs"));
  t.push(bytes("tu"));
  CHECK(t.contents() == bytes("nopqrstu"));
}

TEST(protocol_parses_each_operation_and_its_fields) {
  auto hello = parse_request(R"({"id":1,"op":"hello","protocol":1,"client":"berth cli"})");
  CHECK(hello.request.has_value());
  CHECK(hello.request->op == Op::kHello);
  CHECK_STR(hello.request->client, std::string("berth cli"));
  auto attach = parse_request(R"({"id":2,"op":"console-attach"})");
  CHECK(attach.request && attach.request->replay);
  auto quiet = parse_request(R"({"id":3,"op":"console-attach","replay":false})");
  CHECK(quiet.request && !quiet.request->replay);
  auto input = parse_request(R"({"id":4,"op":"console-input","data":"aGk="})");
  CHECK(input.request && input.request->data == bytes("hi"));
  auto big_id = parse_request(R"({"id":9007199254740991,"op":"state"})");
  CHECK(big_id.request && big_id.request->id == 9007199254740991ull);
  auto insert = parse_request(R"({"id":5,"op":"media","drive":1,"path":"/isos/debian.iso"})");
  CHECK(insert.request && insert.request->op == Op::kMedia && insert.request->drive == 1);
  CHECK_STR(insert.request->path, std::string("/isos/debian.iso"));
  auto eject = parse_request(R"({"id":6,"op":"media","drive":0,"path":""})");
  CHECK(eject.request && eject.request->path.empty());
  auto shot = parse_request(R"({"id":7,"op":"screenshot","path":"/tmp/screen.png"})");
  CHECK(shot.request && shot.request->op == Op::kScreenshot);
  CHECK_STR(shot.request->path, std::string("/tmp/screen.png"));
  CHECK(shot.request->max_width == 0);
  auto thumb = parse_request(R"({"id":8,"op":"screenshot","path":"/tmp/t.png","maxWidth":320})");
  CHECK(thumb.request && thumb.request->max_width == 320);
}

TEST(protocol_refuses_bad_requests_naming_the_field) {
  struct Case {
    const char* line;
    bool has_id;
    const char* message;
  } cases[] = {
      {"", false, "not JSON"},
      {"{", false, "not JSON"},
      {"\"state\"", false, "must be an object"},
      {R"({"op":"state"})", false, "id: "},
      {R"({"id":9007199254740992,"op":"state"})", false, "id: "},
      {R"({"id":1e300,"op":"state"})", false, "id: "},
      {R"({"id":1,"op":5})", true, "op: "},
      {R"({"id":1,"op":"launch"})", true, "unknown operation 'launch'"},
      {R"({"id":1,"op":"state","x":null})", true, "unknown field 'x'"},
      {R"({"id":1,"op":"hello","client":"c"})", true, "protocol: "},
      {R"({"id":1,"op":"hello","protocol":1})", true, "client: "},
      {R"({"id":1,"op":"console-input","data":"a"})", true, "data: must be base64"},
      {R"({"id":1,"op":"console-input","data":"=abc"})", true, "data: must be base64"},
      {R"({"id":1,"op":"console-attach","replay":1})", true, "replay: "},
      {R"({"id":1,"op":"media","path":"/a.iso"})", true, "drive: "},
      {R"({"id":1,"op":"media","drive":-1,"path":"/a.iso"})", true, "drive: "},
      {R"({"id":1,"op":"media","drive":0,"path":"a.iso"})", true, "path: "},
      {R"({"id":1,"op":"media","drive":0})", true, "path: "},
      {R"({"id":1,"op":"media","drive":0,"path":"","x":1})", true, "unknown field 'x'"},
      {R"({"id":1,"op":"screenshot","path":"screen.png"})", true, "path: "},
      {R"({"id":1,"op":"screenshot"})", true, "path: "},
      {R"({"id":1,"op":"screenshot","path":"/s.png","disks":[]})", true, "unknown field 'disks'"},
      {R"({"id":1,"op":"screenshot","path":"/s.png","maxWidth":8})", true, "maxWidth: must be a whole number of pixels from 16"},
      {R"({"id":1,"op":"screenshot","path":"/s.png","maxWidth":320.5})", true, "maxWidth: "},
      {R"({"id":1,"op":"screenshot","path":"/s.png","maxWidth":"320"})", true, "maxWidth: "},
      {R"({"id":1,"op":"save","path":"/s.state","maxWidth":320})", true, "unknown field 'maxWidth'"},
  };
  for (const Case& c : cases) {
    auto r = parse_request(c.line);
    CHECK(!r.request.has_value());
    CHECK_EQ(r.id.has_value(), c.has_id);
    if (r.error.find(c.message) == std::string::npos) berth::test::fail(__FILE__, __LINE__, std::string(c.line) + " -> " + r.error);
  }
}

TEST(protocol_builds_lines_the_client_parses) {
  CHECK_STR(ok_response(3, "{}"), std::string("{\"id\":3,\"ok\":true,\"result\":{}}\n"));
  CHECK_STR(error_response(std::nullopt, "PROTOCOL", "not JSON"),
           std::string("{\"error\":{\"code\":\"PROTOCOL\",\"message\":\"not JSON\"},\"id\":null,\"ok\":false}\n"));
  // Text that is not UTF-8 (a path in a message) still gives valid JSON.
  std::string odd = error_response(1, "IO", std::string("bad \xff byte"));
  CHECK(odd.find("\xff") == std::string::npos);
  CHECK_STR(console_event(bytes("hi")), std::string("{\"event\":\"console\",\"data\":\"aGk=\"}\n"));
}

TEST(lifecycle_refusals_name_the_state_and_what_to_do) {
  CHECK(!refusal("web1", VmState::kRunning, Action::kPause).has_value());
  CHECK_STR(*refusal("web1", VmState::kPaused, Action::kPause), std::string("cannot pause 'web1': it is Paused; it is already paused"));
  CHECK_STR(*refusal("web1", VmState::kPaused, Action::kReset), std::string("cannot reset 'web1': it is Paused; resume it first"));
  CHECK_STR(*refusal("web1", VmState::kStarting, Action::kShutDown), std::string("cannot shut down 'web1': it is Starting"));
  CHECK(!refusal("web1", VmState::kStopping, Action::kTurnOff).has_value());
}

TEST(machine_spec_reads_disks_nics_and_boot) {
  WorkerSpec s = parse_machine_spec(kSpec);
  CHECK_STR(s.name, std::string("web1"));
  CHECK_EQ(s.machine.memory_bytes, uint64_t{64} << 20);
  CHECK_EQ(s.machine.vcpu_count, 2u);
  CHECK_EQ(s.machine.boot.vcpu_count, 2u);
  CHECK_STR(s.machine.boot.initrd_path, std::string("/i"));
  CHECK_EQ(s.machine.disks.size(), size_t{2});
  CHECK(s.machine.disks[1].read_only);
  CHECK_STR(s.machine.disks[1].format, std::string("host-device"));
  CHECK_EQ(s.machine.nics.size(), size_t{1});
  CHECK(s.machine.nics[0].restricted);
  CHECK_EQ(s.machine.nics[0].mac[5], uint8_t{0x56});
  CHECK_EQ(s.machine.nics[0].port_forwards[0].guest_port, uint16_t{22});
  CHECK(s.machine.restart_on_reset);
}

TEST(machine_spec_reads_firmware_boot) {
  const std::string kernel = R"("boot":{"kernelPath":"/k","initrdPath":"/i","cmdline":"console=ttyS0"})";
  WorkerSpec u = parse_machine_spec(with(kSpec, kernel, R"("boot":{"firmware":{"kind":"uefi","codePath":"/c.fd","varsPath":"/v.fd"}})"));
  CHECK(u.machine.firmware.kind == berth::machine::FirmwareKind::kUefi);
  CHECK_STR(u.machine.firmware.code_path, std::string("/c.fd"));
  CHECK_STR(u.machine.firmware.vars_path, std::string("/v.fd"));
  CHECK(u.machine.boot.kernel_path.empty());
  WorkerSpec b = parse_machine_spec(with(kSpec, kernel, R"("boot":{"firmware":{"kind":"bios","codePath":"/bios.bin"}})"));
  CHECK(b.machine.firmware.kind == berth::machine::FirmwareKind::kBios);
  CHECK(parse_machine_spec(kSpec).machine.firmware.kind == berth::machine::FirmwareKind::kNone);
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, kernel, R"("boot":{"firmware":{"kind":"efi","codePath":"/c"}})")),
                    "INVALID_CONFIG", "boot.firmware.kind");
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, kernel, R"("boot":{"firmware":{"kind":"uefi","codePath":"/c"}})")),
                    "INVALID_CONFIG", "varsPath");
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, kernel, R"("boot":{"firmware":{"kind":"bios","codePath":"/c","varsPath":"/v"}})")),
                    "INVALID_CONFIG", "UEFI only");
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, kernel, R"("boot":{"firmware":{"kind":"bios","codePath":"/c"},"kernelPath":"/k"})")),
                    "INVALID_CONFIG", "kernelPath");
  using Device = berth::machine::FirmwareConfig::BootDevice;
  CHECK(b.machine.firmware.boot_order == (std::vector<Device>{Device::kDvd, Device::kDisk, Device::kNetwork}));
  WorkerSpec o = parse_machine_spec(with(with(kSpec, kernel, R"("boot":{"firmware":{"kind":"bios","codePath":"/c","bootOrder":["disk","dvd"]}})"),
                                         R"("com1":true,)", R"("com1":true,"dvds":[{"path":"/x.iso"},{"path":""}],)"));
  CHECK(o.machine.firmware.boot_order == (std::vector<Device>{Device::kDisk, Device::kDvd}));
  CHECK_EQ(o.machine.dvds.size(), size_t{2});
  CHECK_STR(o.machine.dvds[0].path, std::string("/x.iso"));
  CHECK(o.machine.dvds[1].path.empty());
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, kernel, R"("boot":{"firmware":{"kind":"bios","codePath":"/c","bootOrder":["disk","disk"]}})")),
                    "INVALID_CONFIG", "listed twice");
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, kernel, R"("boot":{"firmware":{"kind":"bios","codePath":"/c","bootOrder":["floppy"]}})")),
                    "INVALID_CONFIG", "bootOrder[0]");
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, R"("com1":true,)", R"("com1":true,"dvds":[{"path":"/x.iso"}],)")),
                    "INVALID_CONFIG", "SCSI controller");
  CHECK(!b.machine.firmware.display);
  WorkerSpec d = parse_machine_spec(with(kSpec, kernel, R"("boot":{"firmware":{"kind":"bios","codePath":"/c","display":true,"displayRomPath":"/vga.bin"}})"));
  CHECK(d.machine.firmware.display);
  CHECK_STR(d.machine.firmware.display_rom_path, std::string("/vga.bin"));
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, kernel, R"("boot":{"firmware":{"kind":"bios","codePath":"/c","display":"yes"}})")),
                    "INVALID_CONFIG", "boot.firmware.display");
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, kernel, R"("boot":{"firmware":{"kind":"bios","codePath":"/c","displayRomPath":"/vga.bin"}})")),
                    "INVALID_CONFIG", "goes with display: true");
}

TEST(machine_spec_reads_the_disk_controller) {
  const std::string kernel = R"("boot":{"kernelPath":"/k","initrdPath":"/i","cmdline":"console=ttyS0"})";
  const std::string bios = R"("boot":{"firmware":{"kind":"bios","codePath":"/bios.bin"}})";
  const std::string first = R"("serial":"berth-slot-0"})";
  WorkerSpec s = parse_machine_spec(with(with(kSpec, kernel, bios), first, R"("serial":"berth-slot-0","controller":"scsi"})"));
  CHECK(s.machine.disks[0].scsi);
  CHECK(!s.machine.disks[1].scsi);
  CHECK(!parse_machine_spec(with(with(kSpec, kernel, bios), first, R"("serial":"berth-slot-0","controller":"virtio"})")).machine.disks[0].scsi);
  CHECK(!parse_machine_spec(kSpec).machine.disks[0].scsi);
  CHECK_THROWS_CODE(parse_machine_spec(with(with(kSpec, kernel, bios), first, R"("serial":"berth-slot-0","controller":"ide"})")),
                    "INVALID_CONFIG", "disks[0].controller");
  // A VM that boots a kernel file has no SCSI controller.
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, first, R"("serial":"berth-slot-0","controller":"scsi"})")), "INVALID_CONFIG",
                    "SCSI controller");
}

TEST(machine_spec_refuses_what_the_schema_does_not_allow) {
  CHECK_THROWS_CODE(parse_machine_spec("{"), "INVALID_CONFIG", "not valid JSON");
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, "\"specVersion\":2", "\"specVersion\":3")), "UNSUPPORTED_VERSION", "version 3");
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, "\"vcpus\":2", "\"vcpus\":0")), "INVALID_CONFIG", "vcpus");
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, "\"vcpus\":2", "\"vcpus\":2,\"gpu\":true")), "INVALID_CONFIG", "unknown field 'gpu'");
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, "\"memoryMiB\":64", "\"memoryMiB\":\"64\"")), "INVALID_CONFIG", "memoryMiB");
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, "\"kernelPath\":\"/k\"", "\"kernelPath\":\"\"")), "INVALID_CONFIG", "boot.kernelPath");
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, "02:00:00:12:34:56", "03:00:00:12:34:56")), "INVALID_CONFIG", "multicast");
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, "02:00:00:12:34:56", "02-00-00-12-34-56")), "INVALID_CONFIG", "nics[0].mac");
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, "\"kind\":\"nat\"", "\"kind\":\"tap\"")), "INVALID_CONFIG", "NAT only");
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, "\"hostPort\":2222", "\"hostPort\":70000")), "INVALID_CONFIG", "hostPort");
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, "127.0.0.1", "localhost")), "INVALID_CONFIG", "hostAddress");
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, "berth-slot-0", "berth-slot-0-and-a-long-tail")), "INVALID_CONFIG", "disks[0].serial");
  CHECK_THROWS_CODE(parse_machine_spec(with(kSpec, "\"com1\":true", "\"com1\":1")), "INVALID_CONFIG", "com1");
}
