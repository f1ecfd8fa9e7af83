#include <cstring>
#include <exception>

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

// Runs every registered test (or those whose name contains argv[1]) and prints a closing
// "N passed, N failed" line.
int main(int argc, char** argv) {
  using namespace berth::test;
  const char* filter = argc > 1 ? argv[1] : nullptr;
  int passed = 0, failed = 0;
  for (const auto& c : registry()) {
    if (filter && !std::strstr(c.name, filter)) continue;
    g_failures_in_case = 0;
    try {
      c.body();
    } catch (const std::exception& e) {
      fail(__FILE__, __LINE__, std::string("unexpected exception: ") + e.what());
    }
    if (g_failures_in_case == 0) {
      ++passed;
      std::printf("ok %s\n", c.name);
    } else {
      ++failed;
      std::printf("FAIL %s\n", c.name);
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
