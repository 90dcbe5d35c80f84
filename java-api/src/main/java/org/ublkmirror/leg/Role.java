package org.ublkmirror.leg;

/** Which side of the mirror a leg is. */
public enum Role {
    PRIMARY(1), SECONDARY(2);

    public final int code;

    Role(int code) {
        this.code = code;
    }

    public static Role of(int code) {
        for (Role r : values()) {
            if (r.code == code) return r;
        }
        throw new IllegalArgumentException("unknown leg role " + code);
    }

    public String lower() {
        return name().toLowerCase();
    }
}
