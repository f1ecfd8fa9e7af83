#include "binding/nic_config.h"

#include <arpa/inet.h>

#include <string>

#include "devices/net/nic_check.h"

namespace {

Napi::Error invalid(Napi::Env env, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, "INVALID_ARGUMENT"));
  return err;
}

}  // namespace

std::vector<berth::devices::net::NicConfig> parseNicConfigs(Napi::Env env, Napi::Value nics) {
  using berth::devices::net::NicConfig;
  std::vector<NicConfig> out;
  if (nics.IsUndefined() || nics.IsNull()) return out;
  if (!nics.IsArray()) throw invalid(env, "config.nics must be an array");
  Napi::Array list = nics.As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); ++i) {
    std::string where = "config.nics[" + std::to_string(i) + "]";
    Napi::Value item = list.Get(i);
    if (!item.IsObject()) throw invalid(env, where + " must be an object");
    Napi::Object n = item.As<Napi::Object>();
    auto text = [&](Napi::Object obj, const std::string& at, const char* key, bool optional) -> std::string {
      Napi::Value v = obj.Get(key);
      if (optional && (v.IsUndefined() || v.IsNull())) return "";
      if (!v.IsString()) throw invalid(env, at + "." + key + " must be a string");
      return v.As<Napi::String>().Utf8Value();
    };
    NicConfig nic;
    std::string kind = text(n, where, "kind", false);
    if (kind == "nat") nic.kind = NicConfig::Kind::kNat;
    else if (kind == "tap") nic.kind = NicConfig::Kind::kTap;
    else throw invalid(env, where + ".kind must be 'nat' or 'tap'");
    std::string mac = text(n, where, "mac", false);
    if (!berth::devices::net::parse_mac(mac, nic.mac)) {
      throw invalid(env, where + ".mac must look like 52:54:00:12:34:56, not " + mac);
    }
    Napi::Value restricted = n.Get("restricted");
    if (!restricted.IsUndefined() && !restricted.IsBoolean()) throw invalid(env, where + ".restricted must be a boolean");
    nic.restricted = restricted.IsBoolean() && restricted.As<Napi::Boolean>().Value();
    nic.tap_name = text(n, where, "tapName", true);
    nic.bridge = text(n, where, "bridge", true);
    Napi::Value forwards = n.Get("portForwards");
    if (!forwards.IsUndefined() && !forwards.IsNull()) {
      if (!forwards.IsArray()) throw invalid(env, where + ".portForwards must be an array");
      Napi::Array fl = forwards.As<Napi::Array>();
      for (uint32_t j = 0; j < fl.Length(); ++j) {
        std::string at = where + ".portForwards[" + std::to_string(j) + "]";
        Napi::Value fv = fl.Get(j);
        if (!fv.IsObject()) throw invalid(env, at + " must be an object");
        Napi::Object f = fv.As<Napi::Object>();
        berth::devices::net::PortForward pf;
        std::string protocol = text(f, at, "protocol", true);
        if (protocol.empty() || protocol == "tcp") pf.udp = false;
        else if (protocol == "udp") pf.udp = true;
        else throw invalid(env, at + ".protocol must be 'tcp' or 'udp'");
        std::string host = text(f, at, "hostAddress", true);
        if (!host.empty()) {
          in_addr a;
          if (inet_pton(AF_INET, host.c_str(), &a) != 1) throw invalid(env, at + ".hostAddress must be an IPv4 address");
          pf.host_address = host;
        }
        auto port = [&](const char* key) -> uint16_t {
          Napi::Value v = f.Get(key);
          double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
          if (!(d >= 1 && d <= 65535) || d != static_cast<double>(static_cast<int>(d))) {
            throw invalid(env, at + "." + key + " must be a port number from 1 to 65535");
          }
          return static_cast<uint16_t>(d);
        };
        pf.host_port = port("hostPort");
        pf.guest_port = port("guestPort");
        nic.port_forwards.push_back(std::move(pf));
      }
    }
    if (auto problem = berth::devices::net::nic_problem(nic)) throw invalid(env, where + ": " + *problem);
    out.push_back(std::move(nic));
  }
  return out;
}
