# alba's Nix library: pure Nix, no nixpkgs needed.
#
#   alba.lib.platforms                 the Nix system -> OCI platform table (nix/platforms.json,
#                                      the same file the Rust code reads with include_str!)
#   alba.lib.systems                   the Nix systems alba knows
#   alba.lib.platformString "armv6l-linux"   -> "linux/arm/v6"
#   alba.lib.mkRelease { name; systems; static ? ; container ? ; }
#                                      the release description, checked, with `attrs` and
#                                      `targets` filled in (an absent `attr` stays absent:
#                                      see fillSection);
#                                      a typo, an unknown system or a missing name fails
#                                      at evaluation time, before anything is built
#   alba.lib.checkRelease { ... }      the list of problems mkRelease would refuse ([ ] if none)
#
# Use it from a flake:
#
#   release = alba.lib.mkRelease {
#     name = "albatros";
#     systems = [ "x86_64-linux" "aarch64-linux" ];
#     static.targets = [ "s3://download.example.org?endpoint=garage.example.org&region=garage&s3ForcePathStyle=true" ];
#     container = { };
#   };
let
  platforms = builtins.fromJSON (builtins.readFile ./platforms.json);

  systems = builtins.attrNames platforms;

  show = builtins.toJSON;

  join = builtins.concatStringsSep;

  typeOf =
    value:
    let
      t = builtins.typeOf value;
    in
    if t == "set" then "an attribute set" else if t == "list" then "a list" else "a ${t}";

  # The keys of the release description and of its two sections, as src/config.rs accepts them.
  topKeys = [
    "name"
    "systems"
    "source"
    "static"
    "container"
    "sign"
  ];
  signKeys = [ "keys" ];
  sectionKeys = [
    "attr"
    "attrs"
    "targets"
    "sbom"
    "annotations"
    "aliases"
  ];

  # Examples for error messages only: mkRelease never writes a default `attr` (fillSection).
  exampleAttr = {
    static = name: "packages.{system}.${name}";
    container = name: "legacyPackages.{system}.docker.${name}";
  };

  # Letters, digits, '.', '_' and '-', not starting with '.' (src/names.rs check_name).
  validName = name: builtins.match "[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}" name != null;

  unknownKeys = allowed: set: builtins.filter (k: !(builtins.elem k allowed)) (builtins.attrNames set);

  sectionProblems =
    kind: releaseSystems: section:
    if !builtins.isAttrs section then
      [
        "`${kind}` is ${typeOf section}; write `${kind} = { };` (or `${kind}.targets = [ ... ];`), or leave it out"
      ]
    else
      map (
        k:
        "unknown key ${show k} in `${kind}`; known keys: ${join ", " sectionKeys} (a typo must not publish nowhere)"
      ) (unknownKeys sectionKeys section)
      ++ (
        if section ? attr && !(builtins.isString section.attr && section.attr != "") then
          [
            "`${kind}.attr` must be a non-empty string such as ${show (exampleAttr.${kind} "NAME")}, not ${typeOf section.attr}"
          ]
        else
          [ ]
      )
      ++ (
        if !(section ? attrs) then
          [ ]
        else if !builtins.isAttrs section.attrs then
          [ "`${kind}.attrs` must be an attribute set { SYSTEM = \"attribute.path\"; }, not ${typeOf section.attrs}" ]
        else
          builtins.concatMap (
            system:
            (
              if !builtins.isString section.attrs.${system} then
                [ "`${kind}.attrs.${system}` must be a string (a flake attribute path)" ]
              else
                [ ]
            )
            ++ (
              if builtins.isList releaseSystems && !(builtins.elem system releaseSystems) then
                [ "`${kind}.attrs` names ${show system}, which is not in `systems`; add it to `systems` or remove it" ]
              else
                [ ]
            )
          ) (builtins.attrNames section.attrs)
      )
      ++ (
        if !(section ? targets) then
          [ ]
        else if !(builtins.isList section.targets && builtins.all builtins.isString section.targets) then
          [ "`${kind}.targets` must be a list of target URLs (s3://..., file:..., docker://...)" ]
        else
          [ ]
      );

  # `sign.keys`: key file names as strings. A Nix path (./cosign.key) would copy the secret
  # key into the world-readable store, so it is refused.
  signProblems =
    sign:
    if !builtins.isAttrs sign then
      [ "`sign` is ${typeOf sign}; write `sign.keys = [ \"cosign.key\" ];`" ]
    else
      map (k: "unknown key ${show k} in `sign`; known keys: ${join ", " signKeys} (a typo must not publish nowhere)") (
        unknownKeys signKeys sign
      )
      ++ (
        if !(sign ? keys) then
          [ ]
        else if builtins.isList sign.keys && builtins.any builtins.isPath sign.keys then
          [
            "`sign.keys` holds a Nix path, which copies the secret key into the world-readable Nix store: write the file name as a string (\"cosign.key\", not ./cosign.key)"
          ]
        else if !(builtins.isList sign.keys && builtins.all builtins.isString sign.keys) then
          [ "`sign.keys` must be a list of key file names (strings), e.g. [ \"minisign.key\" \"cosign.key\" ]" ]
        else
          [ ]
      );

  # Every problem of a release description, as messages; [ ] when mkRelease accepts it.
  checkRelease =
    description:
    if !builtins.isAttrs description then
      [ "the release description must be an attribute set { name = ...; systems = [ ... ]; }, not ${typeOf description}" ]
    else
      map (k: "unknown key ${show k}; known keys: ${join ", " topKeys} (a typo must not publish nowhere)") (
        unknownKeys topKeys description
      )
      ++ (
        if !(description ? name) then
          [ "missing `name`: the release name, e.g. name = \"albatros\";" ]
        else if !builtins.isString description.name then
          [ "`name` must be a string such as \"albatros\", not ${typeOf description.name}" ]
        else if !validName description.name then
          [
            "name ${show description.name} is not valid: use letters, digits, '.', '_' and '-' (no '/', '..' or spaces), e.g. albatros"
          ]
        else
          [ ]
      )
      ++ (
        if !(description ? systems) then
          [ "missing `systems`: the Nix systems to build, e.g. systems = [ \"x86_64-linux\" \"aarch64-linux\" ];" ]
        else if !(builtins.isList description.systems && builtins.all builtins.isString description.systems) then
          [ "`systems` must be a list of Nix systems such as [ \"x86_64-linux\" ]" ]
        else if description.systems == [ ] then
          [ "`systems` is empty; list at least one, e.g. [ \"x86_64-linux\" ]" ]
        else
          map (s: "unknown system ${show s}; known systems: ${join ", " systems}") (
            builtins.filter (s: !(platforms ? ${s})) description.systems
          )
      )
      ++ builtins.concatMap (
        kind:
        if description ? ${kind} then sectionProblems kind (description.systems or null) description.${kind} else [ ]
      ) [ "static" "container" ]
      ++ (if description ? sign then signProblems description.sign else [ ])
      ++ (
        if !(description ? static) && !(description ? container) then
          [ "neither `static` nor `container`: nothing to publish; add `static = { };` and/or `container = { };`" ]
        else
          [ ]
      );

  # No default `attr`: without one, alba looks the attribute up the way Nix resolves an
  # installable (packages.{system}.<name>, then legacyPackages.{system}.<name>; for images
  # packages.{system}.docker.<name>, then legacyPackages.{system}.docker.<name>). Writing
  # one default here would pin the first place and break flakes that use the second.
  fillSection =
    section:
    {
      attrs = section.attrs or { };
      targets = section.targets or [ ];
    }
    // (if section ? attr then { inherit (section) attr; } else { });

  mkRelease =
    description:
    let
      problems = checkRelease description;
      name = description.name;
    in
    if problems != [ ] then
      throw (
        "alba.lib.mkRelease: the release description${
          if builtins.isAttrs description && builtins.isString (description.name or null) then " of ${show name}" else ""
        } is not valid:\n"
        + join "\n" (map (p: "  - ${p}") problems)
      )
    else
      {
        inherit name;
        inherit (description) systems;
      }
      // (if description ? static then { static = fillSection description.static; } else { })
      // (
        if description ? container then { container = fillSection description.container; } else { }
      )
      // (if description ? sign then { inherit (description) sign; } else { });

  platformString =
    system:
    let
      p =
        platforms.${system}
          or (throw "alba.lib.platformString: unknown system ${show system}; known systems: ${join ", " systems}");
    in
    "${p.os}/${p.architecture}" + (if p ? variant then "/${p.variant}" else "");
in
{
  inherit
    platforms
    systems
    platformString
    checkRelease
    mkRelease
    ;
}
