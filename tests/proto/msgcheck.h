/* Descriptor-driven checks on protobuf-c messages for the proto tests: deep equality, "every
 * field set", and coverage of every field of every message type reachable from a root. */
#ifndef LLAMAD_TESTS_MSGCHECK_H
#define LLAMAD_TESTS_MSGCHECK_H

#include <stdbool.h>

#include <protobuf-c/protobuf-c.h>

/* True if a and b (same type) hold the same fields and values, recursively. */
bool mc_equal(const ProtobufCMessage *a, const ProtobufCMessage *b);

/* Fails the test (naming the field) unless every field of m is set, recursively: scalars
 * non-zero, strings/bytes non-empty, repeated fields non-empty with non-default elements,
 * sub-messages present. A oneof member counts as set when its case selects it (then its value
 * may be zero: that is what presence is for); unselected members are skipped. Records each
 * set field for mc_check_coverage. */
void mc_check_all_set(const ProtobufCMessage *m);

/* Fails the test naming every field, of every message type reachable from root, that
 * mc_check_all_set never saw set. Returns the number of fields checked. */
int mc_check_coverage(const ProtobufCMessageDescriptor *root);

#endif
