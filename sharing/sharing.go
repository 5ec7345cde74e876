// Package sharing owns the page layers that let many UCs and cached functions share
// memory: a content-addressed store for the pages of function snapshots (identical pages
// stored once, zero pages never), and accounting of shared and private bytes from the
// kernel's own numbers.
//
// The layers (ARCHITECTURE.md §4):
//   - a kind's runtime snapshot is one sparse memory file that every UC of the kind maps
//     MAP_PRIVATE (package unikernel, GuestMemory.MapFile): one copy in the page cache,
//     copied on write per UC; runtime text is inside it (see snapshots' package comment);
//   - a function snapshot is a page diff over it, sorted runs of pages; its pages live in a
//     PageStore, found by slot and checked by SHA-256, shared with every other function
//     snapshot holding the same page;
//   - a UC's private memory is what it wrote since its restore (Usage).
//
// It knows nothing of OpenWhisk, UCs or snapshot files: pages, hashes, slots and host
// mappings only.
package sharing
