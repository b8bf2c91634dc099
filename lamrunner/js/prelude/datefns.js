// date-fns 2.30 `format(date, pattern)` and `parseISO(text)` for lamrunner's QuickJS handlers,
// with date-fns' en-US texts (its default locale). lamrunner/js/preload.py evaluates this once
// per worker. It follows date-fns 2.30.0 (MIT, https://date-fns.org) function by function, and
// tests/test_datefns.py checks it against the real date-fns in Node on many dates x patterns.
// Local time is the process's time zone (TZ), as in Node. Not supported, with a RangeError that
// says so: the week-numbering tokens (Y, R, w, I) and other locales; of `options`, only
// useAdditionalDayOfYearTokens / useAdditionalWeekYearTokens (format) and additionalDigits
// (parseISO) are read.
(() => {
  "use strict";
  const NativeDate = Date, isNaNNum = Number.isNaN, floor = Math.floor, abs = Math.abs;
  const toTag = (v) => Object.prototype.toString.call(v);
  const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December"];
  const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
  const PERIODS = {  // en-US formatting day periods by width
    abbreviated: { am: "AM", pm: "PM", midnight: "midnight", noon: "noon" },
    narrow: { am: "a", pm: "p", midnight: "mi", noon: "n" },
    wide: { am: "a.m.", pm: "p.m.", midnight: "midnight", noon: "noon" },
  };
  const FLEXIBLE = { morning: "in the morning", afternoon: "in the afternoon",
    evening: "in the evening", night: "at night" };

  const toInteger = (dirty) => {
    if (dirty === null || dirty === true || dirty === false) return NaN;
    const number = Number(dirty);
    if (isNaNNum(number)) return number;
    return number < 0 ? Math.ceil(number) : floor(number);
  };
  const requiredArgs = (required, args) => {
    if (args.length < required) {
      throw new TypeError(required + " argument" + (required > 1 ? "s" : "") +
        " required, but only " + args.length + " present");
    }
  };
  const toDate = (argument) => {
    const tag = toTag(argument);
    if (argument instanceof NativeDate || (typeof argument === "object" && tag === "[object Date]")) {
      return new NativeDate(argument.getTime());
    }
    if (typeof argument === "number" || tag === "[object Number]") return new NativeDate(argument);
    if (typeof argument === "string" || tag === "[object String]") {
      console.warn("date-fns format() does not accept strings as dates: use parseISO() first");
    }
    return new NativeDate(NaN);
  };
  const isValid = (dirty) => {
    const tag = toTag(dirty);
    if (!(dirty instanceof NativeDate || (typeof dirty === "object" && tag === "[object Date]")) &&
      typeof dirty !== "number") return false;
    return !isNaNNum(Number(toDate(dirty)));
  };
  const pad = (number, targetLength) => {
    const sign = number < 0 ? "-" : "";
    let output = abs(number).toString();
    while (output.length < targetLength) output = "0" + output;
    return sign + output;
  };
  const ordinal = (number) => {
    const rem100 = number % 100;
    if (rem100 > 20 || rem100 < 10) {
      switch (rem100 % 10) {
        case 1: return number + "st";
        case 2: return number + "nd";
        case 3: return number + "rd";
      }
    }
    return number + "th";
  };
  const month = (m, width) => width === "abbreviated" ? MONTHS[m].slice(0, 3)
    : width === "narrow" ? MONTHS[m][0] : MONTHS[m];
  const day = (d, width) => width === "abbreviated" ? DAYS[d].slice(0, 3)
    : width === "narrow" ? DAYS[d][0] : width === "short" ? DAYS[d].slice(0, 2) : DAYS[d];
  const quarter = (q, width) => width === "abbreviated" ? "Q" + q
    : width === "narrow" ? String(q) : ordinal(q) + " quarter";
  // A run of the same letter: 3 abbreviated, 4 (and the default) wide, 5 narrow, 6 short.
  const width = (token, base) => {
    const n = token.length - base;
    return n === 0 ? "abbreviated" : n === 2 ? "narrow" : n === 3 ? "short" : "wide";
  };
  // Day of week tokens (E, e, c, i): numbers for 1-2 letters, names for 3+.
  const dayName = (d, token) => {
    const n = token.length;
    return day(d, n === 3 ? "abbreviated" : n === 5 ? "narrow" : n === 6 ? "short" : "wide");
  };
  const localDay = (date) => (date.getUTCDay() + 8) % 7 || 7;  // weekStartsOn 0 (en-US)

  const tzShort = (offset, delimiter = "") => {
    const sign = offset > 0 ? "-" : "+", a = abs(offset), hours = floor(a / 60), minutes = a % 60;
    if (minutes === 0) return sign + String(hours);
    return sign + String(hours) + delimiter + pad(minutes, 2);
  };
  const tz = (offset, delimiter = "") => {
    const sign = offset > 0 ? "-" : "+", a = abs(offset);
    return sign + pad(floor(a / 60), 2) + delimiter + pad(a % 60, 2);
  };
  const tzOptionalMinutes = (offset, delimiter) => {
    if (offset % 60 === 0) return (offset > 0 ? "-" : "+") + pad(abs(offset) / 60, 2);
    return tz(offset, delimiter);
  };
  const dayOfYear = (date) => {
    const copy = new NativeDate(date.getTime()), timestamp = copy.getTime();
    copy.setUTCMonth(0, 1);
    copy.setUTCHours(0, 0, 0, 0);
    return floor((timestamp - copy.getTime()) / 86400000) + 1;
  };
  const era = (date, token) => {
    const ad = date.getUTCFullYear() > 0;
    if (token === "GGGGG") return ad ? "A" : "B";
    if (token.length <= 3) return ad ? "AD" : "BC";
    return ad ? "Anno Domini" : "Before Christ";
  };
  const amPm = (hours) => (hours / 12 >= 1 ? "pm" : "am");
  const numberOr = (value, token, letter, names) => {
    if (token === letter) return String(value);
    if (token === letter + letter) return pad(value, 2);
    if (token === letter + "o") return ordinal(value);
    return names();
  };

  // Each formatter reads the UTC fields of `date`, which date-fns shifts so that they are the
  // local fields of the original date; time zones and timestamps read `original`.
  const FORMATTERS = {
    G: (date, token) => era(date, token),
    y: (date, token) => {
      const signed = date.getUTCFullYear(), year = signed > 0 ? signed : 1 - signed;
      if (token === "yo") return ordinal(year);
      return pad(token === "yy" ? year % 100 : year, token.length);
    },
    u: (date, token) => pad(date.getUTCFullYear(), token.length),
    Q: (date, token) => {
      const q = Math.ceil((date.getUTCMonth() + 1) / 3);
      return numberOr(q, token, "Q", () => quarter(q, width(token, 3)));
    },
    q: (date, token) => {
      const q = Math.ceil((date.getUTCMonth() + 1) / 3);
      return numberOr(q, token, "q", () => quarter(q, width(token, 3)));
    },
    M: (date, token) => {
      const m = date.getUTCMonth();
      return numberOr(m + 1, token, "M", () => month(m, width(token, 3)));
    },
    L: (date, token) => {
      const m = date.getUTCMonth();
      return numberOr(m + 1, token, "L", () => month(m, width(token, 3)));
    },
    d: (date, token) => token === "do" ? ordinal(date.getUTCDate())
      : pad(date.getUTCDate(), token.length),
    D: (date, token) => token === "Do" ? ordinal(dayOfYear(date))
      : pad(dayOfYear(date), token.length),
    E: (date, token) => dayName(date.getUTCDay(), token.length < 3 ? "EEE" : token),
    e: (date, token) => numberOr(localDay(date), token, "e", () => dayName(date.getUTCDay(), token)),
    c: (date, token) => token === "cc" ? pad(localDay(date), 2)
      : numberOr(localDay(date), token, "c", () => dayName(date.getUTCDay(), token)),
    i: (date, token) => {
      const d = date.getUTCDay(), iso = d === 0 ? 7 : d;
      if (token === "ii") return pad(iso, token.length);
      return numberOr(iso, token, "i", () => dayName(d, token));
    },
    a: (date, token) => {
      const value = amPm(date.getUTCHours());
      if (token === "aaa") return PERIODS.abbreviated[value].toLowerCase();
      return PERIODS[token.length <= 3 ? "abbreviated" : token === "aaaaa" ? "narrow" : "wide"][value];
    },
    b: (date, token) => {
      const hours = date.getUTCHours();
      const value = hours === 12 ? "noon" : hours === 0 ? "midnight" : amPm(hours);
      if (token === "bbb") return PERIODS.abbreviated[value].toLowerCase();
      return PERIODS[token.length <= 3 ? "abbreviated" : token === "bbbbb" ? "narrow" : "wide"][value];
    },
    B: (date) => {
      const hours = date.getUTCHours();
      return FLEXIBLE[hours >= 17 ? "evening" : hours >= 12 ? "afternoon"
        : hours >= 4 ? "morning" : "night"];
    },
    h: (date, token) => {
      const hours = date.getUTCHours() % 12 || 12;
      return token === "ho" ? ordinal(hours) : pad(hours, token.length);
    },
    H: (date, token) => token === "Ho" ? ordinal(date.getUTCHours())
      : pad(date.getUTCHours(), token.length),
    K: (date, token) => {
      const hours = date.getUTCHours() % 12;
      return token === "Ko" ? ordinal(hours) : pad(hours, token.length);
    },
    k: (date, token) => {
      const hours = date.getUTCHours() || 24;
      return token === "ko" ? ordinal(hours) : pad(hours, token.length);
    },
    m: (date, token) => token === "mo" ? ordinal(date.getUTCMinutes())
      : pad(date.getUTCMinutes(), token.length),
    s: (date, token) => token === "so" ? ordinal(date.getUTCSeconds())
      : pad(date.getUTCSeconds(), token.length),
    S: (date, token) => {
      const n = token.length;
      return pad(floor(date.getUTCMilliseconds() * Math.pow(10, n - 3)), n);
    },
    X: (date, token, original) => {
      const offset = original.getTimezoneOffset();
      if (offset === 0) return "Z";
      if (token === "X") return tzOptionalMinutes(offset);
      return token === "XXXX" || token === "XX" ? tz(offset) : tz(offset, ":");
    },
    x: (date, token, original) => {
      const offset = original.getTimezoneOffset();
      if (token === "x") return tzOptionalMinutes(offset);
      return token === "xxxx" || token === "xx" ? tz(offset) : tz(offset, ":");
    },
    O: (date, token, original) => "GMT" + (token.length <= 3
      ? tzShort(original.getTimezoneOffset(), ":") : tz(original.getTimezoneOffset(), ":")),
    z: (date, token, original) => "GMT" + (token.length <= 3
      ? tzShort(original.getTimezoneOffset(), ":") : tz(original.getTimezoneOffset(), ":")),
    t: (date, token, original) => pad(floor(original.getTime() / 1000), token.length),
    T: (date, token, original) => pad(original.getTime(), token.length),
  };
  const WEEK_TOKENS = { Y: true, R: true, w: true, I: true };

  // P.. (dates), p.. (times) and their pairs: date-fns' en-US long formats, expanded first.
  const LONG_DATE = [null, "MM/dd/yyyy", "MMM d, y", "MMMM do, y", "EEEE, MMMM do, y"];
  const LONG_TIME = [null, "h:mm a", "h:mm:ss a", "h:mm:ss a z", "h:mm:ss a zzzz"];
  const JOINED = [null, "{{date}}, {{time}}", "{{date}}, {{time}}", "{{date}} 'at' {{time}}",
    "{{date}} 'at' {{time}}"];
  const upTo4 = (n) => (n > 4 ? 4 : n);
  const expandLong = (sub) => {
    if (sub[0] === "p") return LONG_TIME[upTo4(sub.length)];
    const match = /^(P+)(p+)?$/.exec(sub), date = upTo4(match[1].length);
    if (!match[2]) return LONG_DATE[date];
    return JOINED[date].replace("{{date}}", LONG_DATE[date])
      .replace("{{time}}", LONG_TIME[upTo4(match[2].length)]);
  };

  const TOKENS = /[yYQqMLwIdDecihHKkms]o|(\w)\1*|''|'(''|[^'])+('|$)|./g;
  const LONG_TOKENS = /P+p+|P+|p+|''|'(''|[^'])+('|$)|./g;
  const ESCAPED = /^'([^]*?)'?$/, DOUBLE_QUOTE = /''/g, LATIN = /[a-zA-Z]/;
  const PROTECTED = {
    D: ["d", "days of the month"], DD: ["dd", "days of the month"],
    YY: ["yy", "years"], YYYY: ["yyyy", "years"],
  };

  const format = function format(dirtyDate, dirtyFormatStr, options) {
    requiredArgs(2, arguments);
    const formatStr = String(dirtyFormatStr);
    const original = toDate(dirtyDate);
    if (!isValid(original)) throw new RangeError("Invalid time value");
    const date = new NativeDate(NativeDate.UTC(original.getFullYear(), original.getMonth(),
      original.getDate(), original.getHours(), original.getMinutes(), original.getSeconds(),
      original.getMilliseconds()));
    date.setUTCFullYear(original.getFullYear());
    const opts = options == null ? {} : options;
    return formatStr.match(LONG_TOKENS).map((sub) => {
      const first = sub[0];
      return first === "p" || first === "P" ? expandLong(sub) : sub;
    }).join("").match(TOKENS).map((sub) => {
      if (sub === "''") return "'";
      const first = sub[0];
      if (first === "'") {
        const matched = sub.match(ESCAPED);
        return matched ? matched[1].replace(DOUBLE_QUOTE, "'") : sub;
      }
      const protectedToken = PROTECTED[sub];
      if (protectedToken && !(first === "D" ? opts.useAdditionalDayOfYearTokens
        : opts.useAdditionalWeekYearTokens)) {
        throw new RangeError("Use `" + protectedToken[0] + "` instead of `" + sub + "` (in `" +
          dirtyFormatStr + "`) for formatting " + protectedToken[1] + " to the input `" +
          String(dirtyDate) + "`; see: https://github.com/date-fns/date-fns/blob/master/docs/unicodeTokens.md");
      }
      const formatter = FORMATTERS[first];
      if (formatter) return formatter(date, sub, original);
      if (WEEK_TOKENS[first]) {
        throw new RangeError("the week-numbering token `" + sub + "` is not supported by " +
          "lamrunner's date-fns (format `" + formatStr + "`)");
      }
      if (LATIN.test(first)) {
        throw new RangeError("Format string contains an unescaped latin alphabet character `" +
          first + "`");
      }
      return sub;
    }).join("");
  };

  // ---------------------------------------------------------------- parseISO (2.30)
  const DATE_REGEX = /^-?(?:(\d{3})|(\d{2})(?:-?(\d{2}))?|W(\d{2})(?:-?(\d{1}))?|)$/;
  const TIME_REGEX =
    /^(\d{2}(?:[.,]\d*)?)(?::?(\d{2}(?:[.,]\d*)?))?(?::?(\d{2}(?:[.,]\d*)?))?$/;
  const TIMEZONE_REGEX = /^([+-])(\d{2})(?::?(\d{2}))?$/;
  const DAYS_IN_MONTH = [31, null, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  const MS_HOUR = 3600000, MS_MINUTE = 60000;

  const splitDateString = (dateString) => {
    const out = {};
    const array = dateString.split(/[T ]/);
    let timeString;
    if (array.length > 2) return out;
    if (/:/.test(array[0])) {
      timeString = array[0];
    } else {
      out.date = array[0];
      timeString = array[1];
      if (/[Z ]/i.test(out.date)) {
        out.date = dateString.split(/[Z ]/i)[0];
        timeString = dateString.substr(out.date.length, dateString.length);
      }
    }
    if (timeString) {
      const token = /([Z+-].*)$/.exec(timeString);
      if (token) {
        out.time = timeString.replace(token[1], "");
        out.timezone = token[1];
      } else {
        out.time = timeString;
      }
    }
    return out;
  };
  const parseYear = (dateString, additionalDigits) => {
    const regex = new RegExp("^(?:(\\d{4}|[+-]\\d{" + (4 + additionalDigits) + "})|(\\d{2}|[+-]\\d{" +
      (2 + additionalDigits) + "})$)");
    const captures = dateString.match(regex);
    if (!captures) return { year: NaN, restDateString: "" };
    const year = captures[1] ? parseInt(captures[1]) : null;
    const century = captures[2] ? parseInt(captures[2]) : null;
    return {
      year: century === null ? year : century * 100,
      restDateString: dateString.slice((captures[1] || captures[2]).length),
    };
  };
  const parseDateUnit = (value) => value ? parseInt(value) : 1;
  const isLeap = (year) => year % 400 === 0 || (year % 4 === 0 && year % 100 !== 0);
  const validateDate = (year, month, date) => month >= 0 && month <= 11 && date >= 1 &&
    date <= (DAYS_IN_MONTH[month] || (isLeap(year) ? 29 : 28));
  const validateDayOfYearDate = (year, dayOfYear) => dayOfYear >= 1 &&
    dayOfYear <= (isLeap(year) ? 366 : 365);
  const validateWeekDate = (_year, week, day) => week >= 1 && week <= 53 && day >= 0 && day <= 6;
  const dayOfISOWeekYear = (isoWeekYear, week, day) => {
    const date = new NativeDate(0);
    date.setUTCFullYear(isoWeekYear, 0, 4);
    const fourthOfJanuaryDay = date.getUTCDay() || 7;
    const diff = (week - 1) * 7 + day + 1 - fourthOfJanuaryDay;
    date.setUTCDate(date.getUTCDate() + diff);
    return date;
  };
  const parseDate = (dateString, year) => {
    if (year === null) return new NativeDate(NaN);
    const captures = dateString.match(DATE_REGEX);
    if (!captures) return new NativeDate(NaN);
    const isWeekDate = !!captures[4];
    const dayOfYear = parseDateUnit(captures[1]);
    const month = parseDateUnit(captures[2]) - 1;
    const day = parseDateUnit(captures[3]);
    const week = parseDateUnit(captures[4]);
    const dayOfWeek = parseDateUnit(captures[5]) - 1;
    if (isWeekDate) {
      if (!validateWeekDate(year, week, dayOfWeek)) return new NativeDate(NaN);
      return dayOfISOWeekYear(year, week, dayOfWeek);
    }
    const date = new NativeDate(0);
    if (!validateDate(year, month, day) || !validateDayOfYearDate(year, dayOfYear)) {
      return new NativeDate(NaN);
    }
    // QuickJS leaves the date as it was when setUTCFullYear gets NaN (V8 makes it invalid).
    if (isNaNNum(date.setUTCFullYear(year, month, Math.max(dayOfYear, day)))) {
      return new NativeDate(NaN);
    }
    return date;
  };
  const parseTimeUnit = (value) => (value && parseFloat(value.replace(",", "."))) || 0;
  const validateTime = (hours, minutes, seconds) => {
    if (hours === 24) return minutes === 0 && seconds === 0;
    return seconds >= 0 && seconds < 60 && minutes >= 0 && minutes < 60 && hours >= 0 &&
      hours < 25;
  };
  const parseTime = (timeString) => {
    const captures = timeString.match(TIME_REGEX);
    if (!captures) return NaN;
    const hours = parseTimeUnit(captures[1]);
    const minutes = parseTimeUnit(captures[2]);
    const seconds = parseTimeUnit(captures[3]);
    if (!validateTime(hours, minutes, seconds)) return NaN;
    return hours * MS_HOUR + minutes * MS_MINUTE + seconds * 1000;
  };
  const validateTimezone = (_hours, minutes) => minutes >= 0 && minutes <= 59;
  const parseTimezone = (timezoneString) => {
    if (timezoneString === "Z") return 0;
    const captures = timezoneString.match(TIMEZONE_REGEX);
    if (!captures) return 0;
    const sign = captures[1] === "+" ? -1 : 1;
    const hours = parseInt(captures[2]);
    const minutes = (captures[3] && parseInt(captures[3])) || 0;
    if (!validateTimezone(hours, minutes)) return NaN;
    return sign * (hours * MS_HOUR + minutes * MS_MINUTE);
  };

  const parseISO = function parseISO(argument, options) {
    requiredArgs(1, arguments);
    const additionalDigits = toInteger(options == null || options.additionalDigits == null ? 2
      : options.additionalDigits);
    if (additionalDigits !== 2 && additionalDigits !== 1 && additionalDigits !== 0) {
      throw new RangeError("additionalDigits must be 0, 1 or 2");
    }
    if (!(typeof argument === "string" ||
      Object.prototype.toString.call(argument) === "[object String]")) {
      return new NativeDate(NaN);
    }
    const dateStrings = splitDateString(argument);
    let date;
    if (dateStrings.date) {
      const parseYearResult = parseYear(dateStrings.date, additionalDigits);
      date = parseDate(parseYearResult.restDateString, parseYearResult.year);
    }
    if (!date || isNaNNum(date.getTime())) return new NativeDate(NaN);
    const timestamp = date.getTime();
    let time = 0, offset;
    if (dateStrings.time) {
      time = parseTime(dateStrings.time);
      if (isNaNNum(time)) return new NativeDate(NaN);
    }
    if (dateStrings.timezone) {
      offset = parseTimezone(dateStrings.timezone);
      if (isNaNNum(offset)) return new NativeDate(NaN);
    } else {
      const dirtyDate = new NativeDate(timestamp + time);
      // A local time: the UTC fields of dirtyDate read as local fields.
      const result = new NativeDate(0);
      result.setFullYear(dirtyDate.getUTCFullYear(), dirtyDate.getUTCMonth(),
        dirtyDate.getUTCDate());
      result.setHours(dirtyDate.getUTCHours(), dirtyDate.getUTCMinutes(),
        dirtyDate.getUTCSeconds(), dirtyDate.getUTCMilliseconds());
      return result;
    }
    return new NativeDate(timestamp + time + offset);
  };

  globalThis.format = format;
  globalThis.parseISO = parseISO;
})();
