# Every dependency comes from a Debian 12 package; scripts/setup.sh installs them.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)

# spdlog in Debian is built against the external fmt: use its CMake package, which
# carries -DSPDLOG_FMT_EXTERNAL and friends.
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(CLI11 REQUIRED)
find_package(Protobuf REQUIRED)
find_package(prometheus-cpp REQUIRED)
find_package(GTest REQUIRED)
find_package(benchmark REQUIRED)

pkg_check_modules(ZMQ REQUIRED IMPORTED_TARGET libzmq)
pkg_check_modules(CPPZMQ REQUIRED IMPORTED_TARGET cppzmq)
# cpp-httplib is a compiled library in Debian; its .pc adds the OPENSSL/ZLIB/BROTLI
# defines that every translation unit including httplib.h must share.
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET libsodium)
pkg_check_modules(SYSTEMD REQUIRED IMPORTED_TARGET libsystemd)
pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)

# RocksDB: Debian ships the library and headers but no CMake config.
find_path(ROCKSDB_INCLUDE_DIR rocksdb/db.h REQUIRED)
find_library(ROCKSDB_LIBRARY rocksdb REQUIRED)
add_library(tributary_dep_rocksdb INTERFACE)
target_include_directories(tributary_dep_rocksdb SYSTEM INTERFACE ${ROCKSDB_INCLUDE_DIR})
target_link_libraries(tributary_dep_rocksdb INTERFACE ${ROCKSDB_LIBRARY})

# gloo: Debian ships libgloo.so and headers (TCP + ibverbs transports, no CUDA). Found now, linked by the
# cluster-mode island all-reduce when it lands (docs/architecture.md, "Where the next pieces go").
find_path(GLOO_INCLUDE_DIR gloo/allreduce.h REQUIRED)
find_library(GLOO_LIBRARY gloo REQUIRED)
add_library(tributary_dep_gloo INTERFACE)
target_include_directories(tributary_dep_gloo SYSTEM INTERFACE ${GLOO_INCLUDE_DIR})
target_link_libraries(tributary_dep_gloo INTERFACE ${GLOO_LIBRARY} Threads::Threads)
