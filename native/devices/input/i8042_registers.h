// Register bits and command numbers of the i8042, shared by the controller and its saved
// state.
#pragma once

#include <cstdint>

namespace berth::devices::input::i8042 {

constexpr uint64_t kDataPort = 0, kCommandPort = 4;

constexpr uint8_t kStatusOutputFull = 0x01, kStatusSystemFlag = 0x04, kStatusCommand = 0x08,
                  kStatusNotInhibited = 0x10, kStatusAuxData = 0x20;

// Command byte bits.
constexpr uint8_t kCtrKeyboardInterrupt = 0x01, kCtrAuxInterrupt = 0x02, kCtrSystemFlag = 0x04,
                  kCtrKeyboardDisabled = 0x10, kCtrAuxDisabled = 0x20, kCtrTranslate = 0x40;
// Keyboard interrupt, system flag, scancode translation: what firmware usually leaves.
constexpr uint8_t kCtrDefault = 0x45;

constexpr uint8_t kOutputPortResetLine = 0x01;  // clear: CPU held in reset
constexpr uint8_t kOutputPortDefault = 0x03;    // reset line high, A20 enabled

constexpr uint8_t kCmdReadRamFirst = 0x20, kCmdReadRamLast = 0x3f, kCmdWriteRamFirst = 0x60,
                  kCmdWriteRamLast = 0x7f, kCmdDisableAux = 0xa7, kCmdEnableAux = 0xa8,
                  kCmdAuxInterfaceTest = 0xa9, kCmdSelfTest = 0xaa, kCmdInterfaceTest = 0xab,
                  kCmdDisableKeyboard = 0xad, kCmdEnableKeyboard = 0xae, kCmdReadOutputPort = 0xd0,
                  kCmdWriteOutputPort = 0xd1, kCmdWriteKeyboardBuffer = 0xd2,
                  kCmdWriteAuxBuffer = 0xd3, kCmdWriteAux = 0xd4;

constexpr uint8_t kSelfTestPassed = 0x55, kInterfaceTestPassed = 0x00;

// The commands that wait for a data byte.
constexpr bool takes_data_byte(uint8_t cmd) {
  return (cmd >= kCmdWriteRamFirst && cmd <= kCmdWriteRamLast) || cmd == kCmdWriteOutputPort ||
         cmd == kCmdWriteKeyboardBuffer || cmd == kCmdWriteAuxBuffer || cmd == kCmdWriteAux;
}

}  // namespace berth::devices::input::i8042
