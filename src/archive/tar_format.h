#pragma once

// The tar header block (POSIX ustar, pax extensions, GNU long names), shared by the writer and
// the reader of the archive library.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace agentbox::archive::tar {

inline constexpr size_t kBlock = 512;

// Offsets into a header block.
struct Field {
  size_t off;
  size_t len;
};
inline constexpr Field kName{0, 100}, kMode{100, 8}, kUid{108, 8}, kGid{116, 8}, kSize{124, 12},
    kMtime{136, 12}, kChksum{148, 8}, kType{156, 1}, kLinkname{157, 100}, kMagic{257, 6},
    kVersion{263, 2}, kUname{265, 32}, kGname{297, 32}, kPrefix{345, 155};

// Entry types.
inline constexpr char kRegular = '0', kRegularOld = '\0', kContiguous = '7', kHardLink = '1',
                      kSymlink = '2', kCharDev = '3', kBlockDev = '4', kDirectory = '5',
                      kFifo = '6', kPaxLocal = 'x', kPaxGlobal = 'g', kGnuLongName = 'L',
                      kGnuLongLink = 'K';

// Writes `v` as NUL-terminated octal into the field; false when it does not fit.
bool PutOctal(char* block, Field f, uint64_t v);
// Reads an octal (or GNU base-256) number; nullopt when malformed.
std::optional<uint64_t> GetNumber(const char* block, Field f);
// The field's text up to its first NUL.
std::string GetString(const char* block, Field f);
// Sets the checksum field from the block's bytes.
void SetChecksum(char* block);
// Whether the checksum field matches (unsigned or, as old tars wrote, signed sums).
bool ChecksumOk(const char* block);
// One pax record: "<len> key=value\n".
std::string PaxRecord(std::string_view key, std::string_view value);

}  // namespace agentbox::archive::tar
