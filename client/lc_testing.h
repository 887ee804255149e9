/* libllamactl internals for tests and fuzz targets only (not installed, not exported from
 * the shared library: the names do not start with lc_). */
#ifndef LLAMACTL_TESTING_H
#define LLAMACTL_TESTING_H

#include "llamactl.h"

/* Makes c use an already connected stream socket fd (e.g. one end of a socketpair) as if
 * lc_conn_connect had succeeded, without the Hello exchange. c takes ownership of fd. */
int llamactl_testing_adopt_fd(lc_conn *c, int fd);

#endif
