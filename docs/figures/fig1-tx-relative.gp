set datafile separator whitespace
set key inside right top box opaque
set grid
set border 3
set tics nomirror
set pointsize 1.2
set style line 1 lc rgb '#000000' lw 2 pt 5
set style line 2 lc rgb '#1f77b4' lw 2 pt 7
set style line 3 lc rgb '#d62728' lw 2 pt 9
set style line 4 lc rgb '#2ca02c' lw 2 pt 11
set style line 5 lc rgb '#9467bd' lw 2 pt 13
set style line 6 lc rgb '#ff7f0e' lw 2 pt 3
set style line 9 lc rgb '#000000' lw 2 pt 6 ps 3
set title 'TX: throughput relative to plain TCP, and offload vs software TLS'
set xlabel 'TX loss (% of packets dropped NIC -> client)'
set ylabel 'throughput ratio (x)'
set yrange [0:*]
set xrange [-0.25:*]
$paper << EOD
0 3.3
EOD
plot 'fig1-tx-relative.dat' index 0 using ($1+-0.1):2:3:4 with yerrorlines ls 1 title "sw-vs-plain", 'fig1-tx-relative.dat' index 1 using ($1+-0.06):2:3:4 with yerrorlines ls 2 title "nic-vs-plain", 'fig1-tx-relative.dat' index 2 using ($1+-0.02):2:3:4 with yerrorlines ls 3 title "nic-tagcache-vs-plain", 'fig1-tx-relative.dat' index 3 using ($1+0.02):2:3:4 with yerrorlines ls 4 title "mbedtls-vs-plain", 'fig1-tx-relative.dat' index 4 using ($1+0.06):2:3:4 with yerrorlines ls 5 title "nic-vs-sw", 'fig1-tx-relative.dat' index 5 using ($1+0.1):2:3:4 with yerrorlines ls 6 title "nic-tagcache-vs-sw", $paper using 1:2 with points ls 9 title 'paper: offload / software kTLS, TX (3.3x)'
