// Parses create()'s `nics` array into the machine's NIC configurations. The JavaScript
// layer (app/native/machine.ts) validates first; this checks again because the addon must
// not trust its caller.
#pragma once

#include <napi.h>

#include <vector>

#include "devices/net/backend.h"

// nics: [{kind: 'nat'|'tap', mac: 'xx:xx:xx:xx:xx:xx', restricted?, tapName?, bridge?,
//         portForwards?: [{protocol: 'tcp'|'udp', hostAddress?, hostPort, guestPort}]}]
// Throws a JS error with code INVALID_ARGUMENT.
std::vector<berth::devices::net::NicConfig> parseNicConfigs(Napi::Env env, Napi::Value nics);
