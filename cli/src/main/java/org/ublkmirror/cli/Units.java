package org.ublkmirror.cli;

import java.time.Instant;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.LocalTime;
import java.time.ZoneId;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.Locale;

/** Sizes (4096, 64K, 1G, 1.5GiB), rates (50M = 50 MiB/s) and times (10:02, 2026-11-21T10:02, -10m, now). */
final class Units {
    private Units() {
    }

    static long parseSize(String s) {
        String t = s.trim().toUpperCase(Locale.ROOT).replace("IB", "").replace("B", "");
        if (t.isEmpty()) throw new IllegalArgumentException("empty size");
        long mult = 1;
        char last = t.charAt(t.length() - 1);
        int shift = "KMGTP".indexOf(last);
        if (shift >= 0) {
            mult = 1L << (10 * (shift + 1));
            t = t.substring(0, t.length() - 1);
        }
        try {
            double d = Double.parseDouble(t);
            if (d < 0 || Double.isNaN(d)) throw new NumberFormatException();
            return (long) (d * mult);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("'" + s + "' is not a size; write it like 4096, 64K, 512M or 1G");
        }
    }

    static String human(long bytes) {
        if (bytes < 1024) return bytes + " B";
        String units = "KMGTP";
        double v = bytes;
        int i = -1;
        while (v >= 1024 && i < units.length() - 1) {
            v /= 1024;
            i++;
        }
        return String.format(Locale.ROOT, "%.1f %siB", v, units.charAt(i));
    }

    static long parseTime(String s, long now) {
        String t = s.trim();
        if (t.equalsIgnoreCase("now")) return now;
        if (t.matches("-?\\d+[smhd]")) {
            long n = Long.parseLong(t.replaceAll("[^0-9]", ""));
            char u = t.charAt(t.length() - 1);
            long ms = n * switch (u) {
                case 's' -> 1000L;
                case 'm' -> 60_000L;
                case 'h' -> 3_600_000L;
                default -> 86_400_000L;
            };
            return now - ms;
        }
        if (t.matches("\\d{13}")) return Long.parseLong(t);
        ZoneId z = ZoneId.systemDefault();
        try {
            if (t.matches("\\d{1,2}:\\d{2}(:\\d{2})?")) {
                LocalTime lt = LocalTime.parse(t.length() <= 5 && t.indexOf(':') == 1 ? "0" + t : t);
                return ZonedDateTime.of(LocalDate.now(z), lt, z).toInstant().toEpochMilli();
            }
            if (t.endsWith("Z") || t.matches(".*[+-]\\d{2}:\\d{2}$")) return Instant.parse(t).toEpochMilli();
            return LocalDateTime.parse(t.replace(' ', 'T')).atZone(z).toInstant().toEpochMilli();
        } catch (DateTimeParseException e) {
            throw new IllegalArgumentException("'" + s + "' is not a time; write it like 10:02, 2026-11-21T10:02, -10m or now");
        }
    }

    static String time(long ms) {
        return DateTimeFormatter.ISO_OFFSET_DATE_TIME.format(Instant.ofEpochMilli(ms).atZone(ZoneId.systemDefault()).withNano(0));
    }
}
