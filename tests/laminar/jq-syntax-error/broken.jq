# a typo on line 3: nothing runs, nothing is sent
{
  total: (.input.items | map(.price) | add
}
