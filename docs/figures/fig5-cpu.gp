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
set title 'CPU per byte: host and simulated NIC threads'
set ylabel 'CPU time per byte (s/GB, 10^9 B)'
set style fill solid 0.8 border -1
set boxwidth 0.8
set yrange [0:*]
set xrange [-1:24]
set xtics ('plain' 0, 'mbedtls' 1, 'sw' 2, 'nic' 3, 'nic-tagcache' 4, 'plain' 6, 'mbedtls' 7, 'sw' 8, 'nic' 9, 'nic-tagcache' 10, 'plain' 12, 'mbedtls' 13, 'sw' 14, 'nic' 15, 'nic-tagcache' 16, 'plain' 18, 'mbedtls' 19, 'sw' 20, 'nic' 21, 'nic-tagcache' 22) rotate by 45 right
set bmargin 7
set tmargin 5
set title offset 0,1.5
set key inside left top box opaque
set label 1 'download 0%' at first 2, graph 1.03 center
set label 2 'download 2%' at first 8, graph 1.03 center
set label 3 'upload 0%' at first 14, graph 1.03 center
set label 4 'upload 2%' at first 20, graph 1.03 center
plot 'fig5-cpu-bars.dat' using 1:($3+$4) with boxes lc rgb '#ff7f0e' title 'NIC threads', '' using 1:3 with boxes lc rgb '#1f77b4' title 'host threads', '' using 1:($3+$4):5:6 with yerrorbars lc rgb '#000000' pt 7 ps 0.4 title 'min..max of the total'
