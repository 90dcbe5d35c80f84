package org.ublkmirror.leg;

import java.io.IOException;

/**
 * Metadata that cannot be trusted or does not fit: corrupt or torn records, a leg of another
 * mirror, legs of different sizes. The message is one line: what is wrong and what to do.
 */
public class MetadataException extends IOException {
    public MetadataException(String message) {
        super(message);
    }
}
