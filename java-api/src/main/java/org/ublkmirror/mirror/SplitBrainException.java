package org.ublkmirror.mirror;

import org.ublkmirror.leg.MetadataException;

/** Both legs were written independently: resync refuses until the user picks a side. */
public final class SplitBrainException extends MetadataException {
    public SplitBrainException(String message) {
        super(message);
    }
}
