{
  # The addon (native/) only: this file ships in the package for the source build
  # (where no prebuild fits), so the bench's programs are built by bench/native/build.js.
  # Poller backend: epoll on Linux, kqueue on macOS and FreeBSD. The loop code
  # only sees poller.h; the backend file is the one thing that changes.
  "targets": [
    {
      "target_name": "netloop",
      "sources": [
        "native/addon.cc",
        "native/loop.cc",
        "native/loop_tls.cc",
        "native/readers.cc",
        "native/sockets.cc",
        "native/timer_heap.cc",
        "native/tls.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api"],
      "defines": ["NAPI_VERSION=8"],
      "cflags!": ["-fexceptions"],
      "cflags_cc!": ["-fexceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-O2", "-fno-exceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      # `node-gyp build --debug` (npm run test:asan) is the AddressSanitizer
      # build: build/Debug/netloop.node, loaded when NETLOOP_BUILD=Debug.
      "configurations": {
        "Debug": {
          "cflags_cc": ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g", "-O1"],
          "ldflags": ["-fsanitize=address,undefined"]
        }
      },
      "conditions": [
        ["OS=='linux'", { "sources": ["native/poller_epoll.cc"] }],
        ["OS=='mac' or OS=='freebsd'", { "sources": ["native/poller_kqueue.cc"] }],
        ["OS=='mac'", {
          "xcode_settings": {
            "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
            "GCC_ENABLE_CPP_EXCEPTIONS": "NO",
            "GCC_OPTIMIZATION_LEVEL": "2"
          }
        }]
      ]
    }
  ]
}
