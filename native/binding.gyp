{
  "targets": [
    {
      "target_name": "berth",
      "sources": [
        "<!@(node -p \"require('./binding/sources.js').join(' ')\")"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "."
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "libraries": ["-lz", "-luring", "<!@(pkg-config --libs slirp)"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++1y"],
      "cflags_cc": ["-std=c++20", "-fexceptions", "-Wall", "-Wextra", "-Werror", "-O2", "<!@(pkg-config --cflags slirp)"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++20",
        "OTHER_CPLUSPLUSFLAGS": ["-Wall", "-Wextra", "-Werror"]
      }
    },
    {
      "target_name": "berth-vmm",
      "type": "executable",
      "sources": [
        "<!@(node -p \"require('./binding/sources.js').filter((f) => !f.startsWith('binding/')).join(' ')\")",
        "<!@(node -p \"require('./binding/sources.js').worker.join(' ')\")",
        "<!@(node -p \"require('./binding/sources.js').vnc.join(' ')\")",
        "runner/main.cc"
      ],
      "include_dirs": ["."],
      "libraries": ["-lz", "-luring", "-lpng", "-lvncserver", "<!@(pkg-config --libs slirp)"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++1y"],
      "cflags_cc": ["-std=c++20", "-fexceptions", "-Wall", "-Wextra", "-Werror", "-O2", "<!@(pkg-config --cflags slirp)"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++20",
        "OTHER_CPLUSPLUSFLAGS": ["-Wall", "-Wextra", "-Werror"]
      }
    },
    {
      "target_name": "berth-disk-bench",
      "type": "executable",
      "sources": [
        "<!@(node -p \"require('./binding/sources.js').filter((f) => f.startsWith('common/') || f.startsWith('disk/')).join(' ')\")",
        "tools/disk_bench.cc",
        "tools/disk_bench_async.cc"
      ],
      "include_dirs": ["."],
      "libraries": ["-lz", "-luring"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++1y"],
      "cflags_cc": ["-std=c++20", "-fexceptions", "-Wall", "-Wextra", "-Werror", "-O2"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++20",
        "OTHER_CPLUSPLUSFLAGS": ["-Wall", "-Wextra", "-Werror"]
      }
    }
  ]
}
