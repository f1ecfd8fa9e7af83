#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "tests/check.h"

namespace berth::test {

std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

static int g_failures_in_case = 0;

void fail(const char* file, int line, const std::string& what) {
  ++g_failures_in_case;
  std::fprintf(stderr, "    %s:%d: %s\n", file, line, what.c_str());
}

}  // namespace berth::test

// Runs the registered tests and prints a closing "N passed, N failed, N skipped" line, with
// every skipped test named and its reason. Arguments: --kvm runs only the tests that need
// /dev/kvm, --no-kvm only the others (so a host without KVM runs these and the lab the rest);
// any other argument keeps the tests whose name contains it.
int main(int argc, char** argv) {
  using namespace berth::test;
  enum class Kvm { any, only, none } kvm = Kvm::any;
  const char* filter = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--kvm") == 0) kvm = Kvm::only;
    else if (std::strcmp(argv[i], "--no-kvm") == 0) kvm = Kvm::none;
    else filter = argv[i];
  }
  int passed = 0, failed = 0;
  std::vector<std::string> skipped;
  for (const auto& c : registry()) {
    if (filter && !std::strstr(c.name, filter)) continue;
    if ((kvm == Kvm::only && !c.needs_kvm) || (kvm == Kvm::none && c.needs_kvm)) continue;
    g_failures_in_case = 0;
    std::string skip_reason;
    bool was_skipped = false;
    try {
      c.body();
    } catch (const Skipped& s) {
      was_skipped = true;
      skip_reason = s.reason;
    } catch (const std::exception& e) {
      fail(__FILE__, __LINE__, std::string("unexpected exception: ") + e.what());
    }
    if (g_failures_in_case != 0) {
      ++failed;
      std::printf("FAIL %s\n", c.name);
    } else if (was_skipped) {
      skipped.push_back(std::string(c.name) + ": " + skip_reason);
      std::printf("skip %s: %s\n", c.name, skip_reason.c_str());
    } else {
      ++passed;
      std::printf("ok %s\n", c.name);
    }
  }
  for (const auto& s : skipped) std::printf("skipped: %s\n", s.c_str());
  std::printf("%d passed, %d failed, %zu skipped\n", passed, failed, skipped.size());
  return failed == 0 ? 0 : 1;
}
