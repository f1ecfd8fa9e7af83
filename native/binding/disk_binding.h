// The disk half of the addon's JavaScript surface: exports.disk with promise-returning
// create / inspect / check / convert / expand / shrink / minShrinkSize / compact / merge /
// reconnect, and the Operation handle that cancels a running one.
#pragma once

#include <napi.h>

void registerDiskApi(Napi::Env env, Napi::Object exports);
