// Runs a fuzz target's entry point over files, without libFuzzer: every file of every directory
// (or every file) named on the command line once. ctest uses it to replay each target's seed
// corpus in every build, including the sanitizer build, so the parsers' known inputs are
// checked on every change; scripts/fuzz.sh does the coverage-guided search with clang.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

void run_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

}  // namespace

int main(int argc, char** argv) {
  size_t count = 0;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path target(argv[i]);
    if (std::filesystem::is_directory(target)) {
      for (const auto& entry : std::filesystem::recursive_directory_iterator(target)) {
        if (!entry.is_regular_file()) continue;
        run_file(entry.path());
        count++;
      }
    } else {
      run_file(target);
      count++;
    }
  }
  std::printf("replayed %zu inputs\n", count);
  return count == 0 ? 1 : 0;  // an empty corpus is a broken test, not a pass
}
