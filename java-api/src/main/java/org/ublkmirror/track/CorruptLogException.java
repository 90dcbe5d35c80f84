package org.ublkmirror.track;

import java.io.IOException;

/**
 * A tracking-log record failed validation: bad magic, unknown version, bad checksum,
 * truncation, or inconsistent contents. The record is never used; the message says which
 * check failed and, where known, which copy.
 */
public class CorruptLogException extends IOException {
    private static final long serialVersionUID = 1L;

    public CorruptLogException(String message) {
        super(message);
    }

    public CorruptLogException(String message, Throwable cause) {
        super(message, cause);
    }
}
