-- man/coil.1: it renders without a warning, it names every option that
-- `coil --help` prints and no other, and `cmake --install` puts it in
-- share/man/man1.
local proc = require "spec.support.proc"
local uv = require "luv"

local ROOT = uv.cwd()
local BIN = COIL_BIN:sub(1, 1) == "/" and COIL_BIN or ROOT .. "/" .. COIL_BIN
local BUILD = BIN:match "^(.*)/[^/]+$"
local PAGE = ROOT .. "/man/coil.1"

local function sh(line, args, limit)
  local argv = { "-c", line, "sh" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  return proc.start("sh", argv):wait(limit or 60)
end

-- "-l g=name", "--grace S": an option and its argument, as --help shows them.
local function help_options()
  local r = proc.start(BIN, { "--help" }):wait(10)
  assert.equal(0, r.code, r.stderr)
  local set = {}
  for line in r.stdout:gmatch "[^\n]+" do
    local option = line:match "^  (%-%S*)"
    if option then
      local arg = line:match "^  %-%S* (%S+)  " or line:match "^  %-%S* (%S+)$"
      set[option .. (arg and " " .. arg or "")] = true
    end
  end
  return set
end

-- The same from the page's OPTIONS section: the line after each .TP.
local function page_options()
  local f = assert(io.open(PAGE))
  local text = f:read "a"
  f:close()
  local section = assert(text:match "\n%.SH OPTIONS\n(.-)\n%.SH ", "no OPTIONS section")
  local set = {}
  for head in section:gmatch "%.TP\n([^\n]+)" do
    local words = head:gsub("^%.%a+ ", ""):gsub('"', ""):gsub("\\%-", "-")
    set[(words:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", ""))] = true
  end
  return set
end

describe("man/coil.1", function()
  it("renders with groff and no warning", function()
    local r = sh('LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$1"', { PAGE })
    assert.equal(0, r.code, r.stderr)
    assert.equal("", r.stderr)
    local m = sh('LC_ALL=C.UTF-8 MAN_DISABLE_SECCOMP=1 MANWIDTH=80 man -l "$1" 2>&1 >/dev/null', { PAGE })
    assert.equal(0, m.code, m.stdout)
    assert.equal("", m.stdout)
  end)

  it("names every option of `coil --help`, and no other", function()
    local help, page = help_options(), page_options()
    assert.is_true(next(help) ~= nil, "no option found in coil --help")
    for option in pairs(help) do
      assert.is_true(page[option], "coil --help has '" .. option .. "', the man page has not")
    end
    for option in pairs(page) do
      assert.is_true(help[option], "the man page has '" .. option .. "', coil --help has not")
    end
  end)

  it("and the README's command line name the same options as `coil --help`", function()
    local f = assert(io.open(ROOT .. "/README.md"))
    local block = assert(f:read "a":match "\n## The command line\n\n```\n(.-)```", "no command line block")
    f:close()
    local readme = {}
    for line in block:gmatch "[^\n]+" do
      local option = line:match "^  (%-%S*)"
      if option then
        local arg = line:match "^  %-%S* (%S+)  " or line:match "^  %-%S* (%S+)$"
        readme[option .. (arg and " " .. arg or "")] = true
      end
    end
    assert.same(help_options(), readme)
  end)

  it("has the sections a man page needs", function()
    local f = assert(io.open(PAGE))
    local text = f:read "a"
    f:close()
    for _, name in ipairs { "NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "ENVIRONMENT",
                            "EXIT STATUS", "SIGNALS", "EXAMPLES" } do
      assert.matches("\n%.SH " .. name .. "\n", text)
    end
    local version = proc.start(BIN, { "-e", 'io.write(require "coil".version)' }):wait(10)
    assert.matches('"coil ' .. version.stdout:gsub("%p", "%%%0") .. '"', text)
  end)

  it("is installed by cmake --install in share/man/man1", function()
    local dir = assert(uv.fs_mkdtemp("/tmp/coil-man-XXXXXX"))
    local r = sh('cmake --install "$1" --prefix "$2" >/dev/null && ' ..
                 'cmp "$3" "$2/share/man/man1/coil.1"; s=$?; rm -rf "$2"; exit $s',
                 { BUILD, dir, PAGE }, 120)
    assert.equal(0, r.code, r.stdout .. r.stderr)
  end)
end)
