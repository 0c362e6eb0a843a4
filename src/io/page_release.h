// Dropping the resident pages of a read-only file mapping (LoadMode::kMmap), so that a flow that
// streams through a checkpoint one layer at a time (quantize) keeps its RSS near one layer.
#pragma once

#include <cstddef>

namespace m2fp4 {

// madvise(MADV_DONTNEED) over the pages covering [data, data + bytes). Only for memory mapped
// read-only from a file: the pages fault back from the file on the next access. Never call it on
// memory read into the process (LoadMode::kRead): that memory would read back as zeros. Advisory:
// errors are ignored.
void release_mapped_pages(const void* data, size_t bytes);

// madvise(MADV_POPULATE_READ) over the pages covering [data, data + bytes): maps them in one call
// (Linux 5.14+) instead of one fault per 64 KiB as they are first read. Advisory: errors (an
// older kernel) are ignored.
void populate_mapped_pages(const void* data, size_t bytes);

}  // namespace m2fp4
