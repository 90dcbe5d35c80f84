package org.ublkmirror.gateway;

import org.ublkmirror.leg.Store;

import java.util.Objects;

/**
 * One named export of an {@link NbdServer}: the raw store of a secondary leg (metadata included).
 *
 * @param store       what the export reads and writes; the server does not close it
 * @param sharedWrite allow several clients in the transmission phase at once (else a second one is
 *                    refused at NBD_OPT_GO); also the only case the server advertises CAN_MULTI_CONN
 * @param readOnly    refuse writes (NBD_FLAG_READ_ONLY); read-only clients never count as writers
 */
public record Export(Store store, boolean sharedWrite, boolean readOnly) {
    public Export {
        Objects.requireNonNull(store, "store");
    }

    /** A writable export with one writer at a time. */
    public static Export of(Store store) {
        return new Export(store, false, false);
    }

    public static Export shared(Store store) {
        return new Export(store, true, false);
    }
}
