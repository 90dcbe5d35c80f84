package org.ublkmirror.frontend.ublk;

/** struct ublk_param_basic attrs (UBLK_ATTR_*). */
final class UblkAttrs {
    static final int READ_ONLY = 1, ROTATIONAL = 1 << 1, VOLATILE_CACHE = 1 << 2, FUA = 1 << 3;

    private UblkAttrs() {
    }
}
