"""Chinese meter protocols beside Modbus: DL/T 645-2007 (electricity) and CJ/T 188 (water, heat, gas).

Pure codecs (`bcd`, `framing`, `dlt645`, `cjt188`, `plan`) take bytes and return data; `link` is the
thin I/O that sends one request and waits for the matching answer; `reader` polls one meter with the
same health rules and Reading qualities as the Modbus DeviceReader; `server` simulates meters.
"""
