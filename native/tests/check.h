// A small unit-test harness for native code: TEST(name) registers a test, TEST_KVM(name) one
// that needs /dev/kvm (run where KVM works: on the host or in the lab); CHECK* record failures
// with file and line; CHECK_THROWS_CODE asserts a berth::Error code and message; SKIP(reason)
// ends a test as skipped, which the closing line counts and lists (never as a pass).
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "common/error.h"

namespace berth::test {

struct Case {
  const char* name;
  std::function<void()> body;
  bool needs_kvm;
};

// Thrown by SKIP(): the test did not run to its end and says why.
struct Skipped {
  std::string reason;
};
std::vector<Case>& registry();
void fail(const char* file, int line, const std::string& what);

struct Registrar {
  Registrar(const char* name, std::function<void()> body, bool needs_kvm = false) {
    registry().push_back({name, std::move(body), needs_kvm});
  }
};

}  // namespace berth::test

#define BERTH_CAT2(a, b) a##b
#define BERTH_CAT(a, b) BERTH_CAT2(a, b)
#define TEST(name)                                                              \
  static void BERTH_CAT(test_, name)();                                         \
  static ::berth::test::Registrar BERTH_CAT(reg_, name)(#name, BERTH_CAT(test_, name)); \
  static void BERTH_CAT(test_, name)()

#define TEST_KVM(name)                                                                \
  static void BERTH_CAT(test_, name)();                                               \
  static ::berth::test::Registrar BERTH_CAT(reg_, name)(#name, BERTH_CAT(test_, name), true); \
  static void BERTH_CAT(test_, name)()

#define SKIP(reason) throw ::berth::test::Skipped{reason}

#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) ::berth::test::fail(__FILE__, __LINE__, "CHECK(" #cond ")"); \
  } while (0)

#define CHECK_EQ(a, b)                                                          \
  do {                                                                          \
    auto va_ = (a);                                                             \
    auto vb_ = (b);                                                             \
    if (!(va_ == vb_))                                                          \
      ::berth::test::fail(__FILE__, __LINE__,                                   \
                          "CHECK_EQ(" #a ", " #b "): " + std::to_string(va_) + \
                              " != " + std::to_string(vb_));                    \
  } while (0)

#define CHECK_STR(a, b)                                                               \
  do {                                                                                \
    std::string va_ = (a);                                                            \
    std::string vb_ = (b);                                                            \
    if (va_ != vb_)                                                                   \
      ::berth::test::fail(__FILE__, __LINE__, "CHECK_STR(" #a "): '" + va_ + "' != '" + vb_ + "'"); \
  } while (0)

// Asserts that expr throws berth::Error with the given code and a message containing
// the given text.
#define CHECK_THROWS_CODE(expr, code_, text_)                                      \
  do {                                                                             \
    bool threw_ = false;                                                           \
    try {                                                                          \
      (void)(expr);                                                                \
    } catch (const ::berth::Error& e_) {                                           \
      threw_ = true;                                                               \
      if (e_.code() != (code_))                                                    \
        ::berth::test::fail(__FILE__, __LINE__,                                    \
                            std::string("wrong code ") + e_.code() + ": " + e_.what()); \
      if (std::string(e_.what()).find(text_) == std::string::npos)                 \
        ::berth::test::fail(__FILE__, __LINE__,                                    \
                            std::string("message lacks '") + (text_) + "': " + e_.what()); \
    }                                                                              \
    if (!threw_) ::berth::test::fail(__FILE__, __LINE__, "no error from " #expr);   \
  } while (0)
